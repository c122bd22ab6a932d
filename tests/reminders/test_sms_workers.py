"""Real worker processes send SMS through the Twilio SDK to a loopback Twilio: a worker killed with SIGKILL while
the provider holds its message loses nothing, and the re-send is flagged as a possible duplicate, as email's is."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import ReminderStatus
from surveillance.models.reminders import Channel, DeliveryOutcome
from tests.reminders.conftest import add_reminder, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]
FAST_BEAT = {"CARTWATCH_DISPATCH_INTERVAL_SECONDS": "1"}


def test_it_sends_an_sms_once_through_a_killed_worker_and_flags_the_re_send(
    processes, twilio_server, centre_a, make_patient, open_visit
):
    patient = make_patient(centre_a, phone="+16175550142", sms_consent=True, preferred_channel="sms")
    now = timezone.now()
    visit = open_visit(patient, timezone.localdate(now, centre_a.tz))
    reminder = add_reminder(visit, now - dt.timedelta(seconds=1), channel=Channel.SMS)
    env = {**twilio_server.env(twilio_server.url), "CARTWATCH_REMINDER_LEASE_SECONDS": "12"}
    twilio_server.accept_gate.clear()  # Twilio queues the message, then stalls before answering

    doomed = processes.worker("doomed", **env)
    processes.send()
    wait_until(twilio_server.stalled_after_accept.is_set, 30, message="the provider to accept")
    processes.kill(doomed)
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.SENDING  # claimed, handed over, and its worker is gone
    twilio_server.accept_gate.set()

    processes.worker("rescuer", **env)
    processes.beat(**FAST_BEAT)
    wait_until(lambda: type(reminder).objects.get(pk=reminder.pk).status == ReminderStatus.SENT, 60, message="sent")
    reminder.refresh_from_db()
    first, second = twilio_server.to("+16175550142")
    assert first["Body"] == second["Body"]
    assert reminder.provider_message_id == second["Sid"]
    outcomes = list(reminder.deliveries.values_list("outcome", "possible_duplicate"))
    assert outcomes == [(DeliveryOutcome.RECLAIMED, True), (DeliveryOutcome.SENT, True)]
