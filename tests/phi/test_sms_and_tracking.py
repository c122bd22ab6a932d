"""No patient data in the logs of the SMS channel and the providers' webhooks, and only the minimum necessary in an
SMS: the sentinel's reminders go out through the Twilio backend to the loopback Twilio (which once refuses the
number, quoting it as Twilio does); Twilio's signed status callback reports one undelivered and the sentinel texts
STOP, START and a message naming themself (signed, and once forged); Mailgun reports a bounce of the sentinel's
email, quoting the address (signed, and once forged). An SMS body never holds a name, the MRN or the birth date.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid

import pytest
from django.conf import settings
from django.utils import timezone

from bench._twilio import ACCOUNT_SID, FROM_NUMBER, TwilioDouble
from surveillance.models import Patient, Reminder, ReminderStatus
from surveillance.models.reminders import Channel
from surveillance.reminders import dispatch
from tests.phi.sentinel import (
    EMAIL,
    FAMILY,
    GIVEN,
    MRN,
    PHONE_E164,
    SMS_FORBIDDEN,
    Responses,
    leaks,
    subjects,
)
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
MAILGUN_KEY = "key-" + "5" * 32
MAILGUN_AUTH = "mailgun:hook-secret"


def twilio_post(client, path: str, fields: dict, *, signed: bool = True):
    url = f"{settings.SITE_URL}{path}"
    signature = TwilioDouble.sign(url, fields) if signed else "bm90IGEgc2lnbmF0dXJl"
    return client.post(path, fields, HTTP_X_TWILIO_SIGNATURE=signature)


def mailgun_bounce(message_id: str, *, key: str = MAILGUN_KEY) -> str:
    """A permanent failure as Mailgun reports it: the recipient and the relay's answer both quote the address."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    data = {
        "event": "failed",
        "severity": "permanent",
        "id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "recipient": EMAIL,
        "reason": "bounce",
        "message": {"headers": {"message-id": message_id.strip("<>"), "to": f"{GIVEN} {FAMILY} <{EMAIL}>"}},
        "delivery-status": {"code": 550, "message": f"5.1.1 <{EMAIL}>: mailbox unavailable", "description": FAMILY},
    }
    body = {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": data}
    return json.dumps(body)


@pytest.fixture
def mailgun(settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY, "WEBHOOK_SECRET": MAILGUN_AUTH}
    settings.CARTWATCH_EMAIL_TRACKING = ["mailgun"]
    return settings


def drive_sms(calls: Responses, client, sentinel, visit, twilio) -> None:
    now = timezone.now()
    refused = add_reminder(visit, now, channel=Channel.SMS, days_before=3)
    twilio.answers.append((400, 21211))  # the number refused, the provider's message quoting it
    dispatch.dispatch_run(now)
    refused.refresh_from_db()
    assert refused.status == ReminderStatus.FAILED, refused.last_error

    sent = add_reminder(visit, now, channel=Channel.SMS, days_before=2)
    dispatch.dispatch_run(now)
    sent.refresh_from_db()
    assert sent.status == ReminderStatus.SENT, sent.last_error
    lost = {"MessageSid": sent.provider_message_id, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    lost |= {"To": PHONE_E164, "From": FROM_NUMBER, "AccountSid": ACCOUNT_SID}
    calls.keep("status undelivered", twilio_post(client, "/integrations/twilio/status", lost), expect=204)
    calls.keep("status forged", twilio_post(client, "/integrations/twilio/status", lost, signed=False), expect=403)
    sent.refresh_from_db()
    assert sent.status == ReminderStatus.BOUNCED
    dispatch.dispatch_run(timezone.now())  # the fallback, by email to the sentinel
    assert Reminder.objects.filter(fallback_of=sent).exists()

    inbound = {"AccountSid": ACCOUNT_SID, "From": PHONE_E164, "To": FROM_NUMBER, "MessageSid": "SM1"}
    for text in ("STOP", f"This is {GIVEN} {FAMILY}, MRN {MRN}: when is my visit?", "START"):
        calls.keep(f"inbound {text[:5]}", twilio_post(client, "/integrations/twilio/inbound", inbound | {"Body": text}))
    forged = inbound | {"Body": f"STOP {GIVEN} {FAMILY}"}
    calls.keep("inbound forged", twilio_post(client, "/integrations/twilio/inbound", forged, signed=False), expect=403)
    assert Patient.objects.get(pk=sentinel.pk).sms_consent is True  # STOP, then START: the round trip happened


def drive_mailgun(calls: Responses, client, visit) -> None:
    now = timezone.now()
    emailed = add_reminder(visit, now, channel=Channel.EMAIL, days_before=1)
    dispatch.dispatch_run(now)
    emailed.refresh_from_db()
    assert emailed.status == ReminderStatus.SENT, emailed.last_error
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(MAILGUN_AUTH.encode()).decode()}
    url = "/integrations/mailgun/tracking/"
    for label, body in (
        ("mailgun bounce", mailgun_bounce(emailed.message_id)),
        ("mailgun forged", mailgun_bounce(emailed.message_id, key="key-" + "6" * 32)),
    ):
        calls.keep(label, client.post(url, body, content_type="application/json", **auth))
    emailed.refresh_from_db()
    assert emailed.status == ReminderStatus.BOUNCED


def test_it_keeps_patient_data_out_of_the_sms_channel_and_the_providers_webhooks(
    captured, client, sentinel, open_visit, smtp_settings, twilio_settings, mailgun
):
    Patient.objects.filter(pk=sentinel.pk).update(sms_consent=True, preferred_channel="sms")
    sentinel.refresh_from_db()
    visit = open_visit(sentinel, timezone.localdate(timezone.now(), sentinel.centre.tz) + dt.timedelta(days=1))
    calls = Responses()

    drive_sms(calls, client, sentinel, visit, twilio_settings)
    drive_mailgun(calls, client, visit)

    sms_bodies = [("sms", message["Body"]) for message in twilio_settings.messages]
    assert sms_bodies and smtp_settings.messages, "no SMS or no email went out: the run did not exercise them"
    assert calls.errors, "no webhook was refused: the run did not exercise the refusals"
    assert not leaks(sms_bodies, SMS_FORBIDDEN)
    assert not leaks([*captured.found(), *calls.found(), *subjects(smtp_settings)])
