"""Webhooks are registered and their events caused through the API: its fixtures are the API's. The receivers
listen on loopback, which the service allows as a webhook target only when told to. Twilio's webhooks are tested
with the reminder tests' loopback SMTP server and Twilio."""

import pytest
from django.utils import timezone

from surveillance.models import ReminderStatus
from surveillance.reminders import dispatch
from tests.api.conftest import api_a, planned_a, token_a  # noqa: F401
from tests.reminders.conftest import (  # noqa: F401
    add_reminder,
    open_visit,
    smtp_server,
    smtp_settings,
    twilio_server,
    twilio_settings,
)


@pytest.fixture(autouse=True)
def webhook_loopback(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "WEBHOOK_ALLOW_LOOPBACK": True}


#: The patient of ``sent_email``: their address and the number a fallback SMS goes to.
BOUNCED_ADDRESS = "ana@example.org"
FALLBACK_NUMBER = "+16175550142"


@pytest.fixture
def sent_email(smtp_settings, centre_a, make_patient, open_visit):  # noqa: F811
    """An email reminder sent to the loopback SMTP server, to a patient who also consented to SMS."""
    now = timezone.now()
    patient = make_patient(centre_a, email=BOUNCED_ADDRESS, phone=FALLBACK_NUMBER, sms_consent=True)
    reminder = add_reminder(open_visit(patient, timezone.localdate(now, centre_a.tz)), now)
    dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.SENT and reminder.provider_message_id == reminder.message_id
    return reminder
