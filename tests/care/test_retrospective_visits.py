"""An infusion entered months after it took place: the visits whose window had closed are unrecorded, not cancelled.

They can still be recorded (done, with results, or not done), they move with a corrected infusion date, and they
never reach the reminders, the missed-visit sweep, the worklists or the lost-to-follow-up ladder."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.admin.worklists import WORKLISTS
from surveillance.care import infusions, lifecycle
from surveillance.models import CarTProduct, FollowUpVisit, Infusion, Reminder, VisitStatus
from surveillance.models.patients import LadderStage
from surveillance.reminders import sweep

DAY = dt.timedelta(days=1)


@pytest.fixture
def late(centre_a, make_patient) -> Infusion:
    """An infusion given 200 days ago and entered today."""
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = Infusion(
        patient=make_patient(centre_a),
        product=CarTProduct.objects.get(code="yescarta"),
        infusion_date=today - 200 * DAY,
    )
    infusions.infusion_record(infusion, reason="entered late")
    return infusion


def unrecorded(infusion: Infusion):
    return FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.UNRECORDED).order_by("due_date")


def test_it_plans_visits_whose_window_had_closed_as_unrecorded_without_reminders(late):
    visits = unrecorded(late)
    assert visits.count() > 10
    assert not FollowUpVisit.objects.filter(infusion=late, status=VisitStatus.CANCELLED).exists()
    assert not Reminder.objects.filter(visit__in=visits).exists()
    assert FollowUpVisit.objects.filter(infusion=late, status=VisitStatus.SCHEDULED).exists()


def test_it_records_an_unrecorded_visit_as_done_with_results_or_as_not_done(late):
    done, not_done = unrecorded(late)[:2]
    lifecycle.visit_mark_completed(done, completed_on=done.due_date, results={"cbc": "normal"})
    lifecycle.visit_cancel(not_done, reason="Not attended (clinic notes)")
    done.refresh_from_db()
    not_done.refresh_from_db()
    assert (done.status, done.completed_on, done.results, done.status_reason) == (
        VisitStatus.COMPLETED,
        done.due_date,
        {"cbc": "normal"},
        "",
    )
    assert (not_done.status, not_done.status_reason) == (VisitStatus.CANCELLED, "Not attended (clinic notes)")
    with pytest.raises(lifecycle.TransitionError):
        lifecycle.visit_mark_missed(unrecorded(late).first(), reason="window closed")


def test_it_never_marks_them_missed_lists_them_or_moves_the_ladder(late, centre_a):
    now = timezone.now()
    today = timezone.localdate(now, centre_a.tz)
    before = set(unrecorded(late).values_list("pk", flat=True))
    assert unrecorded(late).filter(window_end__lt=today - 30 * DAY).exists()  # long past any grace days
    assert sweep.daily_sweep(now).missed == 0
    assert set(unrecorded(late).values_list("pk", flat=True)) == before
    late.patient.refresh_from_db()
    assert late.patient.ladder_stage == LadderStage.ON_TRACK
    for worklist in WORKLISTS:
        if worklist.model is FollowUpVisit:
            assert not worklist.apply(FollowUpVisit.objects.all(), today).filter(pk__in=before).exists()


def test_it_moves_them_with_a_corrected_infusion_date_and_says_so(late):
    before = dict(unrecorded(late).values_list("pk", "due_date"))
    diff = infusions.infusion_correct(late, infusion_date=late.infusion_date - 3 * DAY, reason="date typo")
    moved = {move.visit_id: move.new_due for move in diff.moved}
    assert set(before) <= set(moved)
    after = dict(FollowUpVisit.objects.filter(pk__in=before).values_list("pk", "due_date"))
    assert after == moved_by(before, -3) == {pk: moved[pk] for pk in before}
    assert set(FollowUpVisit.objects.filter(pk__in=before).values_list("status", flat=True)) == {VisitStatus.UNRECORDED}


def test_it_schedules_an_unrecorded_visit_whose_window_now_lies_ahead(late, centre_a):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    last = unrecorded(late).last()
    shift = (today - last.window_start).days + 1  # its window now opens tomorrow
    infusions.infusion_correct(late, infusion_date=late.infusion_date + shift * DAY, reason="date typo")
    last.refresh_from_db()
    assert last.status == VisitStatus.SCHEDULED and last.status_reason == "" and last.window_start > today


def moved_by(dates: dict[int, dt.date], days: int) -> dict[int, dt.date]:
    return {pk: due + days * DAY for pk, due in dates.items()}
