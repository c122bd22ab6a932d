"""Mailgun's tracking webhook through django-anymail, signed as Mailgun signs it: a bounce turns a sent email
reminder into a bounced one that falls back to SMS (sent through the loopback Twilio); a forged event changes
nothing (anymail answers 400)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.utils import timezone

from surveillance.models import Reminder, ReminderStatus
from surveillance.models.reminders import Channel
from surveillance.reminders import dispatch, sweep
from tests.integrations.conftest import BOUNCED_ADDRESS, FALLBACK_NUMBER

pytestmark = pytest.mark.django_db
URL = "/integrations/mailgun/tracking/"
SIGNING_KEY = "key-" + "3" * 32


@pytest.fixture
def mailgun(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY, "WEBHOOK_SECRET": "mailgun:hook-secret"}
    settings.CARTWATCH_EMAIL_TRACKING = ["mailgun"]
    return settings


def _event(message_id: str, *, key: str = SIGNING_KEY, event: str = "failed", severity: str = "permanent") -> str:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    data = {
        "event": event,
        "severity": severity,
        "id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "recipient": BOUNCED_ADDRESS,
        "reason": "bounce",
        "message": {"headers": {"message-id": message_id.strip("<>")}},
        "delivery-status": {"code": 550, "message": "5.1.1 mailbox unavailable", "description": ""},
    }
    return json.dumps(
        {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": data}
    )


def _post(client, body: str, auth: str = "mailgun:hook-secret"):
    header = "Basic " + base64.b64encode(auth.encode()).decode()
    return client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=header)


def test_it_turns_a_bounced_email_into_a_fallback_sms(client, mailgun, twilio_settings, sent_email):
    assert _post(client, _event(sent_email.message_id)).status_code == 200
    sent_email.refresh_from_db()
    assert (sent_email.status, sent_email.last_error) == (ReminderStatus.BOUNCED, "email bounced (bounced)")
    assert BOUNCED_ADDRESS not in sent_email.last_error
    fallback = Reminder.objects.get(fallback_of=sent_email)
    assert (fallback.channel, fallback.idempotency_key) == (Channel.SMS, f"{sent_email.idempotency_key}>sms")

    dispatch.dispatch_run(timezone.now())
    (sms,) = twilio_settings.to(FALLBACK_NUMBER)
    fallback.refresh_from_db()
    assert fallback.status == ReminderStatus.SENT and fallback.provider_message_id == sms["Sid"]
    assert _post(client, _event(sent_email.message_id)).status_code == 200  # a repeat changes nothing
    assert Reminder.objects.filter(fallback_of__isnull=False).count() == 1
    digest = sweep.centre_digest_context(sent_email.visit.infusion.patient.centre, timezone.now())
    assert [row["id"] for row in digest["failed"]] == [sent_email.pk]  # the care team's weekly digest lists it


def test_it_leaves_a_temporary_failure_alone(client, mailgun, sent_email):
    assert _post(client, _event(sent_email.message_id, severity="temporary")).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == ReminderStatus.SENT


@pytest.mark.parametrize(
    ("signing", "auth"),
    [("key-" + "4" * 32, "mailgun:hook-secret"), (SIGNING_KEY, "mailgun:guess")],
    ids=["forged signature", "wrong basic auth"],
)
def test_it_refuses_a_forged_event(client, mailgun, sent_email, signing, auth):
    assert _post(client, _event(sent_email.message_id, key=signing), auth=auth).status_code == 400
    sent_email.refresh_from_db()
    assert sent_email.status == ReminderStatus.SENT
    assert not Reminder.objects.filter(fallback_of=sent_email).exists()


def test_it_serves_no_webhook_it_cannot_verify(client, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": "", "WEBHOOK_SECRET": None}
    settings.CARTWATCH_EMAIL_TRACKING = ["mailgun"]
    assert client.post(URL, "{}", content_type="application/json").status_code == 404
