"""Worklists: filtered lists with counts on the index, one- or two-click actions, bulk actions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from surveillance.care import reporting
from surveillance.models import (
    AuditEntry,
    ContactAttempt,
    FollowUpVisit,
    PatientRequest,
    Reminder,
    ReminderStatus,
    VisitStatus,
)
from surveillance.models.patients import LadderStage
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def _list_ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def _counts(response) -> dict[str, int]:
    return {item.worklist.key: item.count for item in response.context["worklists"]}


@pytest.fixture
def ward(centre_a, planned, today):
    """Four patients at centre A, one visit each placed in a known state relative to today."""
    overdue = visit_set(scheduled(planned(centre_a), "M3"), due=today - 3 * DAY)
    due_soon = visit_set(scheduled(planned(centre_a), "M3"), due=today + 10 * DAY)
    missed_infusion = planned(centre_a)
    missed = visit_set(scheduled(missed_infusion, "M3"), due=today - 40 * DAY, after=10)
    FollowUpVisit.objects.filter(pk=missed.pk).update(status=VisitStatus.MISSED, status_reason="Not attended")
    slipping = planned(centre_a, days_ago=400)
    slipping.patient.ladder_stage = LadderStage.TRACING
    slipping.patient.save()
    return {"overdue": overdue, "due_soon": due_soon, "missed": missed, "slipping": slipping.patient}


def test_it_shows_a_count_for_every_worklist_on_the_index(login, coordinator_a, ward):
    response = login(coordinator_a).get(reverse("admin:index"))
    assert response.status_code == 200
    counts = _counts(response)
    assert set(counts) == {
        "due14",
        "window_open",
        "overdue",
        "missed",
        "ladder",
        "failed_reminders",
        "letters",
        "requests",
        "product",
        "identity",
        "reporting",
        "signals",
    }
    assert counts["missed"] == 1
    assert counts["ladder"] == 1
    assert counts["overdue"] >= 1
    assert b'data-worklist="overdue"' in response.content


def test_it_lists_each_visit_in_the_worklists_its_dates_call_for(login, coordinator_a, ward):
    client = login(coordinator_a)
    url = reverse("admin:surveillance_followupvisit_changelist")
    overdue = _list_ids(client.get(url, {"worklist": "overdue"}))
    due14 = _list_ids(client.get(url, {"worklist": "due14"}))
    window_open = _list_ids(client.get(url, {"worklist": "window_open"}))
    missed = _list_ids(client.get(url, {"worklist": "missed"}))
    assert ward["overdue"].pk in overdue and ward["due_soon"].pk not in overdue
    assert ward["due_soon"].pk in due14 and ward["overdue"].pk not in due14
    # the overdue visit's window is still open, but a late visit is only overdue; the other opens in 5 days
    assert ward["overdue"].pk not in window_open and ward["due_soon"].pk not in window_open
    assert missed == {ward["missed"].pk}


def test_it_records_a_visit_done_and_it_leaves_the_overdue_list(login, coordinator_a, ward, today):
    client = login(coordinator_a)
    visit = ward["overdue"]
    worklist = reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue"
    page = client.get(reverse("admin:surveillance_followupvisit_change", args=[visit.pk]))
    assert page.status_code == 200 and b"Record visit done" in page.content
    codes = [name for name in page.context["complete_form"].fields if name.startswith("result_")]
    data = {"action": "complete", "completed_on": today.isoformat(), "next": worklist}
    data.update({name: "normal" for name in codes})
    response = client.post(reverse("admin:surveillance_followupvisit_change", args=[visit.pk]), data)
    assert response.status_code == 302 and response["Location"] == worklist
    visit.refresh_from_db()
    assert visit.status == VisitStatus.COMPLETED and visit.completed_on == today
    assert visit.status_changed_by == coordinator_a
    recorded = dict(visit.assessment_results.values_list("assessment", "outcome"))
    assert codes and recorded == {name.removeprefix("result_"): "normal" for name in codes}
    assert visit.pk not in _list_ids(client.get(worklist))


def test_it_refuses_a_completion_dated_in_the_future_with_a_field_error(login, coordinator_a, ward, today):
    visit = ward["overdue"]
    response = login(coordinator_a).post(
        reverse("admin:surveillance_followupvisit_change", args=[visit.pk]),
        {"action": "complete", "completed_on": (today + 2 * DAY).isoformat()},
    )
    assert response.status_code == 400
    assert "completed_on" in response.context["complete_form"].errors
    visit.refresh_from_db()
    assert visit.status == VisitStatus.SCHEDULED


def test_it_reschedules_within_the_window_only(login, coordinator_a, ward):
    client = login(coordinator_a)
    visit = ward["due_soon"]
    due = visit.due_date
    url = reverse("admin:surveillance_followupvisit_change", args=[visit.pk])
    outside = client.post(url, {"action": "reschedule", "new_date": (visit.window_end + DAY).isoformat()})
    assert outside.status_code == 400 and "new_date" in outside.context["reschedule_form"].errors
    inside = client.post(url, {"action": "reschedule", "new_date": (visit.due_date + DAY).isoformat()})
    assert inside.status_code == 302
    visit.refresh_from_db()
    assert visit.due_date == due + DAY and visit.sequence == 1


def test_it_cancels_selected_visits_with_a_reason_in_bulk(login, coordinator_a, ward):
    client = login(coordinator_a)
    url = reverse("admin:surveillance_followupvisit_changelist")
    ids = [ward["overdue"].pk, ward["due_soon"].pk]
    ask = client.post(url, {"action": "cancel_with_reason", "_selected_action": ids})
    assert ask.status_code == 200 and b"reason" in ask.content
    assert FollowUpVisit.objects.filter(pk__in=ids, status=VisitStatus.CANCELLED).count() == 0
    done = client.post(
        url, {"action": "cancel_with_reason", "_selected_action": ids, "apply": "1", "reason": "Moved abroad"}
    )
    assert done.status_code == 302
    cancelled = FollowUpVisit.objects.filter(pk__in=ids, status=VisitStatus.CANCELLED, status_reason="Moved abroad")
    assert cancelled.count() == 2
    audited = AuditEntry.objects.filter(
        action="cancelled", object_type="followupvisit", object_id__in=[str(i) for i in ids]
    )
    assert audited.count() == 2 and all(e.actor == coordinator_a and e.remote_addr == "10.1.2.3" for e in audited)


def test_it_marks_the_patients_of_selected_visits_contacted(login, coordinator_a, ward):
    client = login(coordinator_a)
    url = reverse("admin:surveillance_followupvisit_changelist")
    response = client.post(url, {"action": "mark_contacted", "_selected_action": [ward["overdue"].pk]})
    assert response.status_code == 302
    attempt = ContactAttempt.objects.get(patient=ward["overdue"].infusion.patient)
    assert attempt.reached and attempt.by == coordinator_a


def test_it_logs_an_attempt_from_the_ladder_in_one_form(login, coordinator_a, ward):
    client = login(coordinator_a)
    ladder = client.get(reverse("admin:surveillance_patient_changelist"), {"worklist": "ladder"})
    assert _list_ids(ladder) == {ward["slipping"].pk}
    url = reverse("admin:surveillance_patient_log_attempt", args=[ward["slipping"].pk])
    assert url.encode() in ladder.content
    response = client.post(url, {"method": "letter", "note": "Letter to home address"})
    assert response.status_code == 302
    attempt = ContactAttempt.objects.get(patient=ward["slipping"])
    assert attempt.method == "letter" and not attempt.reached and attempt.by == coordinator_a
    assert client.get(reverse("admin:surveillance_patient_change", args=[ward["slipping"].pk])).context[
        "contact_attempts"
    ] == [attempt]


def test_it_lists_failed_reminders_and_unhandled_requests(login, coordinator_a, ward):
    visit = ward["due_soon"]
    reminder = Reminder.objects.filter(visit=visit).first()
    assert reminder is not None, "a visit due in 10 days has reminders planned"
    Reminder.objects.filter(pk=reminder.pk).update(
        status=ReminderStatus.FAILED, last_smtp_code=550, last_error="bounced"
    )
    request_row = PatientRequest.objects.create(visit=visit, kind="reschedule", message="Next week please")
    client = login(coordinator_a)
    failed = client.get(reverse("admin:surveillance_reminder_changelist"), {"worklist": "failed_reminders"})
    assert _list_ids(failed) == {reminder.pk}
    url = reverse("admin:surveillance_patientrequest_changelist")
    assert _list_ids(client.get(url, {"worklist": "requests"})) == {request_row.pk}
    client.post(url, {"action": "handle", "_selected_action": [request_row.pk]})
    request_row.refresh_from_db()
    assert request_row.handled_by == coordinator_a
    assert _list_ids(client.get(url, {"worklist": "requests"})) == set()


def test_it_lists_open_reporting_steps_and_counts_the_escalated(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=400)
    reporting.malignancy_event_record(infusion, diagnosis_date=today - 30 * DAY, malignancy_type="mds_aml")
    client = login(physician_a)
    counts = {item.worklist.key: item for item in client.get(reverse("admin:index")).context["worklists"]}
    assert counts["reporting"].count == 4 and counts["reporting"].escalated == 4
    steps = client.get(reverse("admin:surveillance_reportingstep_changelist"), {"worklist": "reporting"})
    assert len(_list_ids(steps)) == 4 and b"escalated" in steps.content


def test_it_takes_closed_patients_off_the_visit_worklists(login, coordinator_a, ward, today):
    from surveillance.care import lifecycle

    lifecycle.patient_close(ward["overdue"].infusion.patient, status="deceased", on=today, reason="Died")
    overdue = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist"), {"worklist": "overdue"})
    assert ward["overdue"].pk not in _list_ids(overdue)


def test_it_keeps_a_coordinator_from_recording_a_malignancy(login, coordinator_a):
    assert login(coordinator_a).get(reverse("admin:surveillance_malignancyevent_add")).status_code == 403


def test_it_gives_an_auditor_no_action_on_a_visit(login, auditor, ward):
    client = login(auditor)
    url = reverse("admin:surveillance_followupvisit_change", args=[ward["overdue"].pk])
    assert b"Record visit done" not in client.get(url).content
    response = client.post(url, {"action": "cancel", "reason": "x"})
    assert response.status_code == 403
    assert timezone.now()  # the visit is untouched:
    assert FollowUpVisit.objects.get(pk=ward["overdue"].pk).status == VisitStatus.SCHEDULED
