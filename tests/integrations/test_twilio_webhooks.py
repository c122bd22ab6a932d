"""Twilio's webhooks, signed as Twilio signs them: STOP ends SMS reminders (the care team still hears of a late
visit), START brings them back, an undelivered SMS falls back; a request without Twilio's signature changes
nothing and is refused with 403."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from bench._twilio import ACCOUNT_SID, FROM_NUMBER, TwilioDouble
from surveillance.models import AuditEntry, LetterTask, Patient, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Channel, Purpose
from surveillance.reminders import dispatch
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
NUMBER = "+16175550142"


def _post(client, path: str, fields: dict, *, token: str | None = None, signature: str | None = None):
    url = f"{settings.SITE_URL}{path}"
    if signature is None:
        signature = TwilioDouble.sign(url, fields, **({"token": token} if token else {}))
    return client.post(path, fields, HTTP_X_TWILIO_SIGNATURE=signature)


def _reply(client, body: str, **signing):
    fields = {"AccountSid": ACCOUNT_SID, "From": NUMBER, "To": FROM_NUMBER, "Body": body, "MessageSid": "SM1"}
    return _post(client, "/integrations/twilio/inbound", fields, **signing)


@pytest.fixture
def sms_patient(make_patient, centre_a):
    return make_patient(centre_a, phone=NUMBER, sms_consent=True, preferred_channel="sms", email="")


def test_it_stops_sms_on_stop_while_the_care_teams_escalations_go_on(
    client, twilio_settings, smtp_settings, sms_patient, open_visit
):
    visit = open_visit(sms_patient, NOW.date())
    reply = _reply(client, "Stop")
    assert reply.status_code == 200 and reply["Content-Type"].startswith("text/xml")
    sms_patient.refresh_from_db()
    assert sms_patient.sms_consent is False
    entry = AuditEntry.objects.get(action="sms_stop")
    assert (entry.patient_id, entry.actor_label) == (sms_patient.pk, "patient-sms")

    reminder = add_reminder(visit, NOW, channel=Channel.SMS)
    escalation = add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE, days_before=0)
    dispatch.dispatch_run(NOW)
    assert twilio_settings.messages == []
    reminder.refresh_from_db()
    escalation.refresh_from_db()
    assert reminder.status == ReminderStatus.SKIPPED and reminder.outcome_reason == "patient has not consented to SMS"
    assert escalation.status == ReminderStatus.SENT and smtp_settings.to("team-a@example.org")

    assert _reply(client, "START").status_code == 200
    sms_patient.refresh_from_db()
    assert sms_patient.sms_consent is True


def test_it_understands_the_spanish_keywords_and_twilios_opt_out_type(client, twilio_settings, sms_patient):
    _reply(client, "parar")
    assert Patient.objects.get(pk=sms_patient.pk).sms_consent is False
    _reply(client, "Comenzar")
    assert Patient.objects.get(pk=sms_patient.pk).sms_consent is True
    fields = {"From": NUMBER, "Body": "no more please", "OptOutType": "STOP"}
    _post(client, "/integrations/twilio/inbound", fields)
    assert Patient.objects.get(pk=sms_patient.pk).sms_consent is False
    _reply(client, "what time is my visit?")  # anything else changes nothing
    assert Patient.objects.get(pk=sms_patient.pk).sms_consent is False


@pytest.mark.parametrize(
    "forgery",
    [{"signature": ""}, {"signature": "bm90IGEgc2lnbmF0dXJl"}, {"token": "0" * 32}],
    ids=["unsigned", "made-up signature", "signed with another token"],
)
def test_it_refuses_a_forged_webhook(client, twilio_settings, sms_patient, forgery):
    assert _reply(client, "STOP", **forgery).status_code == 403
    assert Patient.objects.get(pk=sms_patient.pk).sms_consent is True
    fields = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert _post(client, "/integrations/twilio/status", fields, **forgery).status_code == 403
    assert not AuditEntry.objects.filter(action__startswith="sms_").exists()


def test_it_turns_an_undelivered_sms_into_a_bounce_that_falls_back(client, twilio_settings, sms_patient, open_visit):
    now = timezone.now()  # the callback is recorded at the real time: the visit is ahead of it
    reminder = add_reminder(open_visit(sms_patient, timezone.localdate(now, sms_patient.tz)), now, channel=Channel.SMS)
    dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    (message,) = twilio_settings.messages
    assert message["StatusCallback"] == f"{settings.SITE_URL}/integrations/twilio/status"

    fields = {"MessageSid": message["Sid"], "MessageStatus": "undelivered", "ErrorCode": "30003"}
    for _ in range(2):  # Twilio may call twice: the second finds nothing to change
        assert _post(client, "/integrations/twilio/status", fields).status_code == 204
    reminder.refresh_from_db()
    assert (reminder.status, reminder.last_error) == (ReminderStatus.BOUNCED, "sms undelivered (provider error 30003)")
    fallback = Reminder.objects.get(fallback_of=reminder)
    assert fallback.channel == Channel.LETTER and fallback.status == ReminderStatus.PENDING
    dispatch.dispatch_run(timezone.now())
    assert LetterTask.objects.filter(reminder=fallback).exists()

    delivered = {"MessageSid": "SM-unknown", "MessageStatus": "delivered"}
    assert _post(client, "/integrations/twilio/status", delivered).status_code == 204
