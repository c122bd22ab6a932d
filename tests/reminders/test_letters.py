"""A patient no message reaches gets one letter/call task per notice on the coordinators' worklist; marking it done
records the contact attempt."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import translation

from surveillance.models import ContactAttempt, LetterTask, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Channel
from surveillance.reminders import dispatch, letters, outbox

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def test_it_gives_a_patient_without_contact_details_exactly_one_letter_task(
    smtp_settings, centre_a, make_patient, open_visit, coordinator_a
):
    patient = make_patient(centre_a, email="", phone="")
    visit = open_visit(patient, NOW.date())  # due in five days: a catch-up reminder now, another two days before
    outbox.visit_reminders_sync(visit, NOW)
    letter_rows = Reminder.objects.filter(visit=visit, audience=Audience.PATIENT)
    assert set(letter_rows.values_list("channel", flat=True)) == {Channel.LETTER}
    assert letter_rows.count() == 2

    for day in range(4):
        dispatch.dispatch_run(NOW + dt.timedelta(days=day))
    assert set(letter_rows.values_list("status", flat=True)) == {ReminderStatus.SENT}
    task = LetterTask.objects.get()
    assert (task.visit, task.done_at) == (visit, None)
    # the care team's notices still go by email (its window-open notice in the morning digest), the patient's none
    care_team = Reminder.objects.filter(visit=visit, audience=Audience.CARE_TEAM)
    assert care_team.exists() and set(care_team.values_list("channel", flat=True)) == {Channel.EMAIL}
    assert not [m for m in smtp_settings.messages if m["To"] != "team-a@example.org"]

    with translation.override("es"):  # a coordinator working in Spanish: the stored note stays English
        attempt = letters.letter_task_done(task, by=coordinator_a, method="letter", reached=False)
    assert attempt.note.endswith("notice") and attempt.note.startswith("Letter for the ")
    task.refresh_from_db()
    assert (task.contact_attempt, task.done_by) == (attempt, coordinator_a)
    assert ContactAttempt.objects.filter(patient=patient, method="letter").count() == 1
    with pytest.raises(letters.LetterTaskAlreadyDone):
        letters.letter_task_done(task, by=coordinator_a, method="phone", reached=True)
    assert ContactAttempt.objects.filter(patient=patient).count() == 1
