"""The daily sweep marks missed visits and escalates; consecutive misses move a patient along the ladder; the
weekly digest goes to each care team once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from surveillance.care import lifecycle
from surveillance.models import AuditEntry, Patient, Reminder, ReminderStatus, VisitStatus
from surveillance.models.patients import ContactAttempt, ContactMethod, LadderStage, PatientStatus
from surveillance.models.reminders import Audience, CareTeamDigest, Purpose
from surveillance.reminders import sweep

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def _visit_with_window_end(open_visit, patient, window_end: dt.date, occurrence: int):
    visit = open_visit(patient, window_end - dt.timedelta(days=20), occurrence=occurrence)
    assert visit.window_end == window_end
    return visit


def test_it_marks_a_visit_missed_after_the_grace_days_and_tells_the_care_team(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    visit = _visit_with_window_end(open_visit, patient, dt.date(2026, 10, 20), 900)
    # grace 3 days: still scheduled on the 23rd (New York), missed from the 24th
    sweep.daily_sweep(dt.datetime(2026, 10, 24, 3, tzinfo=UTC))  # 23 Oct, 23:00 in New York
    visit.refresh_from_db()
    assert visit.status == VisitStatus.SCHEDULED
    sweep.daily_sweep(dt.datetime(2026, 10, 24, 14, tzinfo=UTC))
    visit.refresh_from_db()
    assert visit.status == VisitStatus.MISSED
    notice = Reminder.objects.get(visit=visit, purpose=Purpose.MISSED)
    assert (notice.audience, notice.status) == (Audience.CARE_TEAM, ReminderStatus.PENDING)
    sweep.daily_sweep(dt.datetime(2026, 10, 25, 14, tzinfo=UTC))  # a second run changes nothing
    assert Reminder.objects.filter(visit=visit, purpose=Purpose.MISSED).count() == 1


def test_it_moves_a_patient_up_the_ladder_and_back_down(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    ends = [dt.date(2026, 7, 1), dt.date(2026, 8, 1), dt.date(2026, 9, 1), dt.date(2026, 10, 1)]
    visits = [_visit_with_window_end(open_visit, patient, end, 900 + n) for n, end in enumerate(ends)]
    stages = []
    for end in ends[:3]:
        sweep.daily_sweep(dt.datetime.combine(end + dt.timedelta(days=5), dt.time(14), UTC))
        patient.refresh_from_db()
        stages.append(patient.ladder_stage)
    assert stages == [LadderStage.OVERDUE, LadderStage.TRACING, LadderStage.LOST]
    assert patient.status == PatientStatus.LOST and patient.status_date == dt.date(2026, 9, 6)
    assert AuditEntry.objects.filter(action="ladder", patient_id=patient.pk).count() == 3

    lifecycle.visit_mark_completed(
        visits[3], completed_on=dt.date(2026, 9, 20), now=dt.datetime(2026, 9, 21, tzinfo=UTC)
    )
    sweep.daily_sweep(dt.datetime(2026, 9, 21, 14, tzinfo=UTC))
    patient.refresh_from_db()
    assert (patient.ladder_stage, patient.status) == (LadderStage.ON_TRACK, PatientStatus.ACTIVE)


def test_it_never_puts_a_closed_patient_on_the_ladder(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    visit = _visit_with_window_end(open_visit, patient, dt.date(2026, 10, 1), 900)
    Patient.objects.filter(pk=patient.pk).update(status=PatientStatus.WITHDRAWN, status_date=dt.date(2026, 9, 1))
    sweep.daily_sweep(dt.datetime(2026, 10, 20, 14, tzinfo=UTC))
    patient.refresh_from_db()
    visit.refresh_from_db()
    assert (patient.ladder_stage, visit.status) == (LadderStage.ON_TRACK, VisitStatus.SCHEDULED)


def test_it_logs_an_automatic_contact_attempt_when_a_patient_on_the_ladder_is_emailed(
    smtp_settings, centre_a, make_patient, open_visit
):
    from surveillance.reminders import dispatch
    from tests.reminders.conftest import add_reminder

    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    patient = make_patient(centre_a, ladder_stage=LadderStage.TRACING)
    add_reminder(open_visit(patient, now.date()), now)
    dispatch.dispatch_run(now)
    [attempt] = ContactAttempt.objects.filter(patient=patient)
    assert attempt.method == ContactMethod.EMAIL and not attempt.reached


def test_it_sends_each_care_team_one_digest_a_week(settings, centre_a, centre_b, make_patient, open_visit):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    patient = make_patient(centre_a, mrn="MRN-DIGEST-1", ladder_stage=LadderStage.TRACING)
    open_visit(patient, dt.date(2026, 11, 2))
    monday = dt.datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert sweep.care_team_digest_send(monday) == 2
    assert sweep.care_team_digest_send(monday + dt.timedelta(hours=3)) == 0  # a second beat, a re-run
    assert CareTeamDigest.objects.filter(sent_at__isnull=False).count() == 2
    digest = next(m for m in mail.outbox if m.to == [centre_a.care_team_email])
    assert "Patients overdue / tracing / lost to follow-up: 0 / 1 / 0" in digest.body
    assert f"/admin/surveillance/patient/{patient.pk}/change/" in digest.body
    assert "MRN-DIGEST-1" not in digest.body and patient.family_name not in digest.body
    assert sweep.care_team_digest_send(monday + dt.timedelta(days=7)) == 2


def test_it_sends_the_digest_on_the_centres_own_monday_morning(settings, centre_a, centre_b):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    early = dt.datetime(2026, 11, 2, 11, 30, tzinfo=UTC)  # 06:30 in New York, 12:30 in Madrid
    assert sweep.care_team_digest_send(early) == 1
    assert [m.to for m in mail.outbox] == [[centre_b.care_team_email]]
    assert sweep.care_team_digest_send(early + dt.timedelta(minutes=35)) == 1  # 07:05 in New York
    assert mail.outbox[-1].to == [centre_a.care_team_email]
