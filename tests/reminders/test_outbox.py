"""The outbox is planned with the visits: default cadence, per-rule cadence, 09:00 local, re-planned with them."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from surveillance.care import planning
from surveillance.models import FollowUpVisit, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import outbox

pytestmark = pytest.mark.django_db
UTC = dt.UTC
PLANNED_AT = dt.datetime(2026, 2, 1, 12, tzinfo=UTC)


def _rows(visit):
    return {
        (r.audience, r.purpose, r.days_before): r.send_after
        for r in Reminder.objects.filter(visit=visit, status=ReminderStatus.PENDING)
    }


def test_it_plans_the_default_cadence_at_nine_in_the_recipients_zone(centre_a, make_patient, make_infusion):
    patient = make_patient(centre_a, time_zone="Europe/Madrid")  # the patient's zone wins over the centre's
    infusion = make_infusion(patient, infusion_date=dt.date(2026, 1, 10))
    planning.infusion_plan(infusion, now=PLANNED_AT)
    visit = FollowUpVisit.objects.filter(infusion=infusion, window_start__gt=dt.date(2026, 3, 1)).first()
    rows = _rows(visit)
    madrid, new_york = zoneinfo.ZoneInfo("Europe/Madrid"), zoneinfo.ZoneInfo("America/New_York")
    assert rows[(Audience.PATIENT, Purpose.UPCOMING, 14)].astimezone(madrid) == dt.datetime.combine(
        visit.due_date - dt.timedelta(days=14), dt.time(9), madrid
    )
    assert rows[(Audience.PATIENT, Purpose.UPCOMING, 2)].astimezone(madrid).time() == dt.time(9)
    assert rows[(Audience.CARE_TEAM, Purpose.WINDOW_OPEN, 0)] == dt.datetime.combine(
        visit.window_start, dt.time(9), new_york
    )
    assert rows[(Audience.CARE_TEAM, Purpose.OVERDUE, 0)] == dt.datetime.combine(
        visit.window_end + dt.timedelta(days=1), dt.time(9), new_york
    )
    assert all(moment.tzinfo is not None and moment.utcoffset() == dt.timedelta(0) for moment in rows.values())


def test_it_follows_the_cadence_of_the_rule(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 10))
    planning.infusion_plan(infusion, now=PLANNED_AT)
    visit = FollowUpVisit.objects.filter(infusion=infusion, window_start__gt=dt.date(2026, 3, 1)).first()
    type(visit.rule).objects.filter(pk=visit.rule_id).update(
        reminders={"patient_days_before": [7], "care_team_window_open": False}
    )
    visit.refresh_from_db()
    outbox.visit_reminders_sync(visit, PLANNED_AT)
    assert set(_rows(visit)) == {(Audience.PATIENT, Purpose.UPCOMING, 7), (Audience.CARE_TEAM, Purpose.OVERDUE, 0)}


def test_it_re_plans_the_reminders_of_a_moved_visit(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 10))
    planning.infusion_plan(infusion, now=PLANNED_AT)
    visit = FollowUpVisit.objects.filter(infusion=infusion, window_start__gt=dt.date(2026, 3, 1)).first()
    old = _rows(visit)
    infusion.infusion_date = dt.date(2026, 1, 17)
    infusion.save()
    planning.infusion_plan(infusion, now=PLANNED_AT)
    visit.refresh_from_db()
    assert visit.sequence == 1
    new = _rows(visit)
    assert new[(Audience.PATIENT, Purpose.UPCOMING, 14)] == old[
        (Audience.PATIENT, Purpose.UPCOMING, 14)
    ] + dt.timedelta(days=7)
    cancelled = Reminder.objects.filter(visit=visit, status=ReminderStatus.CANCELLED)
    assert cancelled.count() == len(old) and all(":s0:" in r.idempotency_key for r in cancelled)
