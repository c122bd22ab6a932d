"""SMS reminders go through the same dispatcher as email, through the official Twilio SDK to a loopback Twilio:
planned on the patient's channel, sent once, retried on a temporary answer, failed (and fallen back) on a
permanent one."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.models import LetterTask, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Channel, DeliveryOutcome
from surveillance.reminders import dispatch, outbox
from tests.ports import free_port
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def _sms_patient(make_patient, centre, **fields):
    values = {"phone": "+16175550142", "sms_consent": True, "preferred_channel": "sms", "email": ""}
    return make_patient(centre, **{**values, **fields})


def test_it_plans_patient_reminders_on_the_preferred_channel_and_the_care_teams_by_email(
    centre_a, make_patient, open_visit
):
    by_sms = open_visit(_sms_patient(make_patient, centre_a, email="a@example.org"), NOW.date(), occurrence=901)
    by_email = open_visit(make_patient(centre_a, phone="+16175550143", sms_consent=True), NOW.date(), occurrence=902)
    unreachable = open_visit(make_patient(centre_a, email=""), NOW.date(), occurrence=903)
    for visit in (by_sms, by_email, unreachable):
        outbox.visit_reminders_sync(visit, NOW)

    def channels(visit, audience):
        return set(Reminder.objects.filter(visit=visit, audience=audience).values_list("channel", flat=True))

    assert channels(by_sms, Audience.PATIENT) == {Channel.SMS}
    assert channels(by_email, Audience.PATIENT) == {Channel.EMAIL}
    assert channels(unreachable, Audience.PATIENT) == {Channel.LETTER}
    assert channels(by_sms, Audience.CARE_TEAM) == channels(unreachable, Audience.CARE_TEAM) == {Channel.EMAIL}


def test_it_sends_an_sms_once_through_the_sdk_and_keeps_the_providers_id(
    twilio_settings, centre_a, make_patient, open_visit
):
    patient = _sms_patient(make_patient, centre_a)
    reminder = add_reminder(open_visit(patient, NOW.date()), NOW, channel=Channel.SMS)

    result = dispatch.dispatch_run(NOW)
    assert (result.sent, result.failed) == (1, 0)
    (message,) = twilio_settings.messages
    assert (message["To"], message["From"]) == ("+16175550142", "+15005550006")
    assert patient.family_name not in message["Body"] and patient.given_name not in message["Body"]
    reminder.refresh_from_db()
    assert (reminder.status, reminder.provider_message_id) == (ReminderStatus.SENT, message["Sid"])
    assert list(reminder.deliveries.values_list("outcome", "smtp_code")) == [(DeliveryOutcome.SENT, None)]
    assert dispatch.dispatch_run(NOW + dt.timedelta(minutes=5)).handled == 0
    assert len(twilio_settings.messages) == 1


def test_it_retries_a_providers_temporary_answer_then_sends(twilio_settings, centre_a, make_patient, open_visit):
    reminder = add_reminder(open_visit(_sms_patient(make_patient, centre_a), NOW.date()), NOW, channel=Channel.SMS)
    twilio_settings.answers.append((503, 20503))

    assert dispatch.dispatch_run(NOW).retried == 1
    reminder.refresh_from_db()
    assert (reminder.status, reminder.last_smtp_code) == (ReminderStatus.PENDING, 503)
    assert reminder.next_attempt_at == NOW + dt.timedelta(seconds=60)
    assert dispatch.dispatch_run(NOW + dt.timedelta(seconds=60)).sent == 1
    assert len(twilio_settings.messages) == 1


def test_it_fails_a_refused_number_and_falls_back_once_to_a_letter_task(
    twilio_settings, centre_a, make_patient, open_visit
):
    patient = _sms_patient(make_patient, centre_a)
    reminder = add_reminder(open_visit(patient, NOW.date()), NOW, channel=Channel.SMS)
    twilio_settings.answers.append((400, 21211))  # Twilio: the 'To' number is not a valid phone number

    dispatch.dispatch_run(NOW)
    reminder.refresh_from_db()
    assert (reminder.status, reminder.last_error) == (ReminderStatus.FAILED, "400 provider error 21211")
    assert patient.phone not in reminder.last_error
    fallback = reminder.fallback
    assert (fallback.channel, fallback.idempotency_key) == (Channel.LETTER, f"{reminder.idempotency_key}>letter")
    assert fallback.status == ReminderStatus.SENT  # the same run put it on the worklist
    assert LetterTask.objects.get().reminder == fallback
    dispatch.dispatch_run(NOW + dt.timedelta(days=1))
    assert Reminder.objects.filter(visit=reminder.visit).count() == 2


def test_it_falls_back_when_the_channel_stopped_reaching_the_patient(smtp_settings, centre_a, make_patient, open_visit):
    patient = _sms_patient(make_patient, centre_a, email="ana@example.org")
    reminder = add_reminder(open_visit(patient, NOW.date()), NOW, channel=Channel.SMS)
    patient.sms_consent = False  # texted STOP after the reminder was planned
    patient.save()

    dispatch.dispatch_run(NOW)
    reminder.refresh_from_db()
    assert (reminder.status, reminder.outcome_reason) == (ReminderStatus.SKIPPED, "patient has not consented to SMS")
    assert reminder.fallback.channel == Channel.LETTER  # forward only: email comes before SMS in the chain
    assert not smtp_settings.messages


def test_it_sends_the_sms_of_a_batch_while_the_mail_server_is_down(
    settings, twilio_settings, centre_a, make_patient, open_visit
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    email = add_reminder(open_visit(make_patient(centre_a), NOW.date(), occurrence=901), NOW)
    sms = add_reminder(open_visit(_sms_patient(make_patient, centre_a), NOW.date()), NOW, channel=Channel.SMS)

    result = dispatch.dispatch_run(NOW)
    email.refresh_from_db()
    sms.refresh_from_db()
    assert (result.sent, result.released) == (1, 1)
    assert sms.status == ReminderStatus.SENT and len(twilio_settings.messages) == 1
    assert (email.status, email.attempts, email.last_error) == (
        ReminderStatus.PENDING,
        0,
        "mail server unreachable: ConnectionRefusedError",
    )


def test_it_writes_the_embedded_defaults_sms_to_files_with_a_line_naming_no_number(
    settings, tmp_path, caplog, centre_a, make_patient, open_visit
):
    settings.CARTWATCH_SMS_BACKEND = "surveillance.reminders.sms_backends.SummaryFileSmsBackend"
    settings.SMS_FILE_PATH = str(tmp_path / "sms")
    reminder = add_reminder(open_visit(_sms_patient(make_patient, centre_a), NOW.date()), NOW, channel=Channel.SMS)
    caplog.set_level("INFO", logger="surveillance.sms")

    assert dispatch.dispatch_run(NOW).sent == 1
    (written,) = (tmp_path / "sms").iterdir()
    assert written.read_text(encoding="utf-8").startswith("To: +16175550142\n\n")
    reminder.refresh_from_db()
    assert reminder.provider_message_id == written.stem
    (line,) = [r.getMessage() for r in caplog.records if r.name == "surveillance.sms"]
    assert "+1617" not in line and str(written) in line
