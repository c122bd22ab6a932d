"""Brevo's tracking webhook through django-anymail, authenticated as Brevo does it (the basic auth in the webhook's
URL): a hard bounce turns a sent email reminder into a bounced one that falls back to SMS; a soft bounce (Brevo
keeps trying) changes nothing; an event without the right basic auth is refused (400) and changes nothing; a
provider not configured, or configured without a secret, is not served (404), and the system check says so."""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.utils import timezone

from surveillance.integrations import email_tracking
from surveillance.models import Reminder, ReminderStatus
from surveillance.models.reminders import Channel
from surveillance.reminders import dispatch
from tests.integrations.conftest import BOUNCED_ADDRESS, FALLBACK_NUMBER

pytestmark = pytest.mark.django_db
URL = "/integrations/brevo/tracking/"
SECRET = "brevo:hook-secret"


@pytest.fixture
def brevo(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": "", "WEBHOOK_SECRET": SECRET}
    settings.CARTWATCH_EMAIL_TRACKING = ["brevo"]
    return settings


def _event(message_id: str, event: str = "hard_bounce") -> str:
    """A Brevo transactional webhook event as Brevo posts it (the Message-ID header as sent, brackets included)."""
    return json.dumps(
        {
            "event": event,
            "email": BOUNCED_ADDRESS,
            "id": 1234567,
            "date": "2026-11-30 12:00:00",
            "ts": int(time.time()),
            "ts_event": int(time.time()),
            "ts_epoch": int(time.time() * 1000),
            "message-id": message_id,
            "reason": "550 5.1.1 mailbox unavailable",
            "tag": "",
            "sending_ip": "185.41.28.109",
        }
    )


def _post(client, body: str, auth: str | None = SECRET):
    headers = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    return client.post(URL, body, content_type="application/json", **headers)


def test_it_turns_a_hard_bounce_into_a_fallback_sms(client, brevo, twilio_settings, sent_email):
    assert _post(client, _event(sent_email.message_id)).status_code == 200
    sent_email.refresh_from_db()
    assert (sent_email.status, sent_email.last_error) == (ReminderStatus.BOUNCED, "email bounced (bounced)")
    fallback = Reminder.objects.get(fallback_of=sent_email)
    assert (fallback.channel, fallback.idempotency_key) == (Channel.SMS, f"{sent_email.idempotency_key}>sms")

    dispatch.dispatch_run(timezone.now())
    (sms,) = twilio_settings.to(FALLBACK_NUMBER)
    fallback.refresh_from_db()
    assert fallback.status == ReminderStatus.SENT and fallback.provider_message_id == sms["Sid"]


def test_it_leaves_a_soft_bounce_alone(client, brevo, sent_email):
    assert _post(client, _event(sent_email.message_id, event="soft_bounce")).status_code == 200
    sent_email.refresh_from_db()
    assert sent_email.status == ReminderStatus.SENT
    assert not Reminder.objects.filter(fallback_of=sent_email).exists()


@pytest.mark.parametrize("auth", ["brevo:guess", None], ids=["wrong basic auth", "no basic auth"])
def test_it_refuses_a_forged_event(client, brevo, sent_email, auth):
    assert _post(client, _event(sent_email.message_id), auth=auth).status_code == 400
    sent_email.refresh_from_db()
    assert sent_email.status == ReminderStatus.SENT
    assert not Reminder.objects.filter(fallback_of=sent_email).exists()


@pytest.mark.parametrize(
    ("esps", "secret"), [(["mailgun"], SECRET), (["brevo"], None)], ids=["not configured", "no secret"]
)
def test_it_serves_no_webhook_it_cannot_verify(client, settings, sent_email, esps, secret):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": "", "WEBHOOK_SECRET": secret}
    settings.CARTWATCH_EMAIL_TRACKING = esps
    assert _post(client, _event(sent_email.message_id)).status_code == 404
    sent_email.refresh_from_db()
    assert sent_email.status == ReminderStatus.SENT


def test_it_flags_a_provider_named_without_its_check_or_not_offered(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": "", "WEBHOOK_SECRET": None}
    settings.CARTWATCH_EMAIL_TRACKING = ["brevo", "postmark"]
    problems = {problem.id: problem.msg for problem in email_tracking.email_tracking_check(None)}
    assert problems.keys() == {"surveillance.W101", "surveillance.E101"}
    assert "ANYMAIL_WEBHOOK_SECRET" in problems["surveillance.W101"] and "'postmark'" in problems["surveillance.E101"]
