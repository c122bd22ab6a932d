"""/health/ and /metrics count reminders per channel as they count them in all: open rows, then the outcomes
(bounced included) among the newest rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models.reminders import Channel
from surveillance.reminders import dispatch, tracking
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db


def test_it_counts_each_channels_reminders(client, twilio_settings, centre_a, make_patient, open_visit):
    now = timezone.now()
    patient = make_patient(centre_a, phone="+16175550142", sms_consent=True)
    visit = open_visit(patient, timezone.localdate(now, centre_a.tz))
    sms = add_reminder(visit, now, channel=Channel.SMS, days_before=3)
    add_reminder(visit, now + dt.timedelta(days=1), channel=Channel.SMS, days_before=1)
    add_reminder(visit, now + dt.timedelta(days=1), days_before=2)
    dispatch.dispatch_run(now)
    sms.refresh_from_db()
    tracking.reminder_delivery_failed(sms.provider_message_id, bounced=True, reason="sms undelivered")

    body = client.get("/health/").json()
    assert body["channels"][Channel.SMS] == {
        "pending": 1,
        "sending": 0,
        "sent": 0,
        "failed": 0,
        "bounced": 1,
        "skipped": 0,
    }
    assert body["channels"][Channel.EMAIL]["pending"] == 1
    assert body["channels"][Channel.LETTER]["pending"] == 1  # the bounce's fallback, due now
    assert (body["bounced"], body["pending"]) == (1, 3)
    scraped = client.get("/metrics").content.decode()
    assert 'cartwatch_reminders_by_channel{channel="sms",state="bounced"} 1.0' in scraped
