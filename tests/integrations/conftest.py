"""Webhooks are registered and their events caused through the API: its fixtures are the API's. The receivers
listen on loopback, which the service allows as a webhook target only when told to. Twilio's webhooks are tested
with the reminder tests' loopback SMTP server and Twilio."""

import pytest

from tests.api.conftest import _fresh_throttle, api_a, planned_a, token_a  # noqa: F401
from tests.reminders.conftest import open_visit, smtp_server, smtp_settings, twilio_server, twilio_settings  # noqa: F401


@pytest.fixture(autouse=True)
def webhook_loopback(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "WEBHOOK_ALLOW_LOOPBACK": True}
