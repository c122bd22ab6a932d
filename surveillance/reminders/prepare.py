"""Render reminders ahead of their moment (``PreparedMessage``), so that the dispatcher only sends bytes.

Every reminder of a time zone falls due at the same minute (09:00 local). Rendering a message (templates in the
patient's language, the calendar entry, signed links, MIME) costs more than its SMTP transaction, so the run that
starts at 09:00 would spend most of its time rendering. This step, run every few minutes, renders the pending
reminders due within the horizon that have no up-to-date rendering, and forgets renderings whose reminder is no
longer pending. It sends nothing and decides nothing: the dispatcher still re-checks every reminder at send time,
and renders afresh any whose fingerprint no longer matches.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from surveillance.models import Channel, PreparedMessage, Reminder, ReminderStatus
from surveillance.reminders import messages

logger = logging.getLogger("surveillance.reminders.prepare")

#: Renderings written per transaction.
STORE_EVERY = 100


@dataclass
class PrepareResult:
    prepared: int = 0
    current: int = 0
    failed: int = 0
    forgotten: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def reminders_prepare(
    now: dt.datetime | None = None, *, horizon: dt.timedelta | None = None, limit: int | None = None
) -> PrepareResult:
    """Render the pending reminders due before ``now + horizon`` whose rendering is missing or stale."""
    now = now or timezone.now()
    cfg = settings.CARTWATCH
    horizon = horizon if horizon is not None else dt.timedelta(minutes=cfg["REMINDER_PREPARE_MINUTES"])
    limit = limit or cfg["REMINDER_PREPARE_LIMIT"]
    result = PrepareResult(forgotten=prepared_forget_done())
    due_soon = list(
        Reminder.objects.due(now + horizon)
        .filter(channel=Channel.EMAIL)  # an SMS is rendered at send time; a letter task has nothing to render
        .select_related("visit__infusion__patient", "prepared")
        .only(*messages.MESSAGE_FIELDS, "prepared__fingerprint")
        .order_by("next_attempt_at", "pk")[:limit]
    )
    messages.centres_attach(due_soon)
    rendered: list[tuple[Reminder, str, bytes]] = []
    for reminder in due_soon:
        fingerprint = messages.reminder_fingerprint(reminder)
        existing = getattr(reminder, "prepared", None)
        if existing is not None and existing.fingerprint == fingerprint:
            result.current += 1
            continue
        try:
            rendered.append((reminder, fingerprint, messages.reminder_bytes(reminder, now=now)))
        except Exception:  # the dispatcher renders it again and records the failure on the row
            logger.exception("reminder=%s cannot be rendered ahead", reminder.pk)
            result.failed += 1
            continue
        if len(rendered) == STORE_EVERY:
            result.prepared += _store(rendered, now)
            rendered = []
    result.prepared += _store(rendered, now)
    if result.prepared or result.failed:
        logger.info("prepared=%s current=%s failed=%s", result.prepared, result.current, result.failed)
    return result


def _store(rendered: list[tuple[Reminder, str, bytes]], now: dt.datetime) -> int:
    """Keep the renderings of the reminders still pending (a dispatcher may have taken some meanwhile); the rows
    are locked so that none is claimed while its rendering is replaced."""
    if not rendered:
        return 0
    with transaction.atomic():
        pending = set(
            Reminder.objects.select_for_update()
            .filter(pk__in=[reminder.pk for reminder, _, _ in rendered], status=ReminderStatus.PENDING)
            .values_list("pk", flat=True)
        )
        PreparedMessage.objects.filter(reminder_id__in=pending).delete()
        PreparedMessage.objects.bulk_create(
            PreparedMessage(reminder_id=reminder.pk, fingerprint=fingerprint, raw=raw, prepared_at=now)
            for reminder, fingerprint, raw in rendered
            if reminder.pk in pending
        )
    return len(pending)


def prepared_forget_done() -> int:
    """Delete the renderings of reminders that were cancelled or dealt with outside the dispatcher."""
    deleted, _ = PreparedMessage.objects.exclude(
        reminder__status__in=(ReminderStatus.PENDING, ReminderStatus.SENDING)
    ).delete()
    return deleted
