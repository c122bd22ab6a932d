"""What providers report after they accepted a message: an SMS undelivered, an email bounced or complained of.

A provider's callback names the message by the id it gave at hand-over (``Reminder.provider_message_id``). A sent
reminder it reports lost becomes ``bounced`` or ``failed`` with the reason, by compare-and-set on its status (a
repeated or late callback changes nothing), lands on the failed-reminders worklist, and falls back to the
patient's next channel.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from surveillance.models import Delivery, Reminder, ReminderStatus
from surveillance.models.reminders import DeliveryOutcome
from surveillance.reminders import channels

logger = logging.getLogger("surveillance.reminders.tracking")


def reminder_delivery_failed(
    provider_message_id: str, *, bounced: bool, reason: str, now: dt.datetime | None = None
) -> Reminder | None:
    """Record that the provider could not deliver a sent message; returns the reminder it changed, or None (an
    unknown id, or a reminder already recorded so). ``reason`` must carry no address or number."""
    if not provider_message_id:
        return None
    now = now or timezone.now()
    status = ReminderStatus.BOUNCED if bounced else ReminderStatus.FAILED
    with transaction.atomic():
        reminder = (
            Reminder.objects.select_related("visit__infusion__patient__centre")
            .filter(provider_message_id=provider_message_id, status=ReminderStatus.SENT)
            .first()
        )
        if reminder is None:
            return None
        won = Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENT).update(
            status=status, last_error=reason[:500], outcome_reason=reason[:255], updated_at=now
        )
        if not won:
            return None
        Delivery.objects.create(
            reminder=reminder,
            attempt=reminder.attempts,
            outcome=DeliveryOutcome.FAILED,
            message_id=reminder.message_id,
            error=f"after acceptance: {reason}"[:500],
        )
        channels.fallback_create(reminder, now)
    logger.warning("reminder=%s channel=%s outcome=%s after acceptance", reminder.pk, reminder.channel, status)
    return reminder
