"""The planner puts each visit on a day the patient's clinic is open, inside its window; a centre that sets no
calendar is open every day, so the setting moves nothing unasked, and setting one moves visits at the next re-plan
with the usual diff."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.care import planning
from surveillance.models import VisitStatus
from surveillance.scheduling.engine import KIND_WITHOUT_REMINDERS

pytestmark = pytest.mark.django_db


def _bookable(infusion):
    return infusion.visits.filter(status=VisitStatus.SCHEDULED).exclude(kind__in=KIND_WITHOUT_REMINDERS)


def test_it_plans_every_visit_on_an_open_day_of_its_window(centre_a, make_patient, make_infusion):
    centre_a.country, centre_a.subdivision, centre_a.closed_weekdays = "US", "NY", [5, 6]
    centre_a.save()
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 11, 7))  # a Saturday
    planning.infusion_plan(infusion)
    calendar = centre_a.calendar()
    visits = list(_bookable(infusion))
    assert visits
    for visit in visits:
        assert visit.window_start <= visit.due_date <= visit.window_end
        assert not calendar.is_closed(visit.due_date), visit
    m12 = infusion.visits.get(rule_code="M12")
    assert m12.due_date == dt.date(2027, 11, 8)  # the anniversary is a Sunday: the Monday after


def test_it_moves_nothing_for_a_centre_without_a_calendar(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 11, 7))
    planning.infusion_plan(infusion)
    assert infusion.visits.get(rule_code="M12").due_date == dt.date(2027, 11, 7)


def test_it_moves_planned_visits_with_a_diff_once_the_centre_closes_on_weekends(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 11, 7))
    planning.infusion_plan(infusion)
    centre_a.closed_weekdays = [5, 6]
    centre_a.save()
    diff = planning.infusion_plan_preview(infusion)
    assert diff.moved and not diff.added and not diff.removed
    planning.infusion_plan(infusion)
    assert infusion.visits.get(rule_code="M12").due_date == dt.date(2027, 11, 8)
    assert not planning.infusion_plan_preview(infusion).moved  # idempotent
