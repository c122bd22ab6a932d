"""Visits an EHR import completes together (``lifecycle.visits_complete_from_ehr``) end as the same rows as when
each is completed on its own (``visit_mark_completed`` with the encounter as source): the visits' fields, their
history rows, the audit entries, the webhook events, the reminders and the patient's ladder stage, whether or not
the patient has a missed visit. A visit a person settled meanwhile is left as it is and not counted as completed,
on either path."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from surveillance.care import lifecycle
from surveillance.models import AuditEntry, FollowUpVisit, Patient, Reminder, VisitChange, WebhookEndpoint
from surveillance.models.integrations import WebhookDelivery
from surveillance.models.patients import LadderStage
from surveillance.models.reminders import Audience, Purpose
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db

Completion = tuple[FollowUpVisit, str, dt.date]


def _visit_like(first: FollowUpVisit, occurrence: int) -> FollowUpVisit:
    """Another open visit of the same infusion and rule."""
    fields = {
        name: getattr(first, name)
        for name in ("infusion", "rule", "rule_code", "label", "kind", "due_date", "window_start", "window_end")
    }
    return FollowUpVisit.objects.create(occurrence=occurrence, assessments=[], reminders_planned_for=0, **fields)


def _on_track_patient(patient: Patient, open_visit, coordinator, now: dt.datetime) -> list[Completion]:
    """Two open visits with pending reminders, a third a person completes after the import read it, and a ladder
    stage that no longer matches the patient's misses (none): the completion moves it back, once."""
    today = timezone.localdate(now)
    first = open_visit(patient, today)
    second = _visit_like(first, 901)
    settled = _visit_like(first, 902)
    add_reminder(first, now + dt.timedelta(days=3))
    add_reminder(second, now + dt.timedelta(days=1), audience=Audience.CARE_TEAM, purpose=Purpose.WINDOW_OPEN)
    stale = FollowUpVisit.objects.get(pk=settled.pk)
    lifecycle.visit_mark_completed(settled, completed_on=today, by=coordinator, now=now)
    Patient.objects.filter(pk=patient.pk).update(ladder_stage=LadderStage.OVERDUE)
    day = today - dt.timedelta(days=1)
    return [(first, "enc-900", day), (second, "enc-901", today), (stale, "enc-902", day)]


def _missed_patient(patient: Patient, open_visit, now: dt.datetime) -> list[Completion]:
    """A visit the sweep marked missed (its webhook event sent, the patient overdue) and an open one."""
    today = timezone.localdate(now)
    first = open_visit(patient, today)
    second = _visit_like(first, 901)
    add_reminder(second, now + dt.timedelta(days=2))
    first = lifecycle.visit_mark_missed(first, reason="Window closed without a recorded visit", now=now)
    assert Patient.objects.get(pk=patient.pk).ladder_stage == LadderStage.OVERDUE
    return [(first, "enc-900", today), (second, "enc-901", today)]


def _one_by_one(completions: list[Completion], now: dt.datetime) -> set[int]:
    done = set()
    for visit, source, day in completions:
        with contextlib.suppress(lifecycle.TransitionError):  # a lost race
            done.add(lifecycle.visit_mark_completed(visit, completed_on=day, source=source, now=now).pk)
    return done


def _rows(patient: Patient, completed: set[int]) -> dict:
    """What the completions left of the patient, with ids replaced by the visits' occurrences."""
    visits = FollowUpVisit.objects.filter(infusion__patient=patient)
    occurrence = {visit.pk: visit.occurrence for visit in visits}
    fields = (
        "status",
        "completed_on",
        "completed_source",
        "results",
        "status_reason",
        "status_changed_at",
        "status_changed_by_id",
        "updated_at",
        "sequence",
        "reminders_planned_for",
    )
    changes = VisitChange.objects.filter(visit__in=visits)
    audit = AuditEntry.objects.filter(patient_id=patient.pk)
    patient.refresh_from_db()
    return {
        "completed": sorted(occurrence[pk] for pk in completed if pk in occurrence),
        "visits": sorted((v.occurrence, *(getattr(v, name) for name in fields)) for v in visits),
        "changes": sorted(
            (occurrence[c.visit_id], c.action, c.by_id, c.reason, sorted(c.before.items()), sorted(c.after.items()))
            for c in changes
        ),
        "audit": sorted(
            (
                a.action,
                a.object_type,
                occurrence.get(int(a.object_id)) if a.object_type == "followupvisit" else a.object_type,
                a.actor_id,
                a.actor_label,
                repr(sorted(a.changes.items())),
            )
            for a in audit
        ),
        "events": sorted(
            (d.event, d.status, d.payload["data"].get("due_date"))
            for d in WebhookDelivery.objects.all()
            if d.payload["data"].get("patient") == patient.pk
        ),
        "reminders": sorted(
            (occurrence[r.visit_id], r.audience, r.purpose, r.status, r.outcome_reason)
            for r in Reminder.objects.filter(visit__in=visits)
        ),
        "patient": (patient.status, patient.ladder_stage, patient.status_reason),
    }


def test_it_completes_visits_together_to_the_rows_one_by_one_writes(centre_a, make_patient, open_visit, coordinator_a):
    WebhookEndpoint.objects.create(centre=centre_a, url="https://a.example.org/hooks", secret="s" * 64)
    now = timezone.now()
    single, bulk = make_patient(centre_a), make_patient(centre_a)
    single_missed, bulk_missed = make_patient(centre_a), make_patient(centre_a)

    one_by_one = _one_by_one(
        _on_track_patient(single, open_visit, coordinator_a, now) + _missed_patient(single_missed, open_visit, now),
        now,
    )
    together = lifecycle.visits_complete_from_ehr(
        _on_track_patient(bulk, open_visit, coordinator_a, now) + _missed_patient(bulk_missed, open_visit, now),
        now=now,
    )

    expected = _rows(single, one_by_one)
    assert expected["completed"] == [900, 901]  # the visit a person completed first lost the race
    assert expected["patient"][1] == LadderStage.ON_TRACK
    assert {r[3] for r in expected["reminders"]} == {"cancelled"}
    got = _rows(bulk, together)
    print("DBG", got["visits"], "\nEXP", expected["visits"])
    assert got == expected
    expected_missed = _rows(single_missed, one_by_one)
    assert expected_missed["events"] and expected_missed["completed"] == [900, 901]
    assert _rows(bulk_missed, together) == expected_missed


@pytest.mark.parametrize("which", [0, 1], ids=["the-missed-visit", "the-open-visit"])
def test_it_completes_a_patient_with_a_missed_visit_together_when_one_visit_of_theirs_is_completed(
    centre_a, make_patient, open_visit, monkeypatch, which
):
    """One completion moves the ladder at most once on either path, so it need not be written one by one."""
    WebhookEndpoint.objects.create(centre=centre_a, url="https://a.example.org/hooks", secret="s" * 64)
    now = timezone.now()
    single, bulk = make_patient(centre_a), make_patient(centre_a)
    one_by_one = _one_by_one([_missed_patient(single, open_visit, now)[which]], now)
    completions = [_missed_patient(bulk, open_visit, now)[which]]

    def one_at_a_time(*args, **kwargs):
        raise AssertionError("completed one by one")

    monkeypatch.setattr(lifecycle, "visit_mark_completed", one_at_a_time)
    together = lifecycle.visits_complete_from_ehr(completions, now=now)
    untouched = FollowUpVisit.objects.filter(infusion__patient__in=[single, bulk]).exclude(pk__in=one_by_one | together)
    untouched.update(updated_at=now)  # the visit neither path changed: created a moment apart, nothing else differs

    expected = _rows(single, one_by_one)
    assert expected["completed"] == [900 + which] and expected["patient"][1] == LadderStage.ON_TRACK
    assert [a for a in expected["audit"] if a[0] == "ladder"]  # the patient moved back on track, audited
    assert _rows(bulk, together) == expected


def test_it_completes_many_visits_in_the_queries_of_one(centre_a, make_patient, open_visit):
    now = timezone.now()
    today = timezone.localdate(now)

    def queries(patients: int) -> int:
        completions = []
        for _ in range(patients):
            first = open_visit(make_patient(centre_a), today)
            add_reminder(first, now + dt.timedelta(days=3))
            completions += [(first, f"enc-{first.pk}", today)]
        with CaptureQueriesContext(connection) as captured:
            assert len(lifecycle.visits_complete_from_ehr(completions, now=now)) == patients
        return len(captured.captured_queries)

    assert queries(6) == queries(1)
