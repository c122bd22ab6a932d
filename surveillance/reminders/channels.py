"""Which channel a patient's reminder takes, and the fallback when a channel fails.

A patient is reached by their preferred channel (email or SMS) when it is usable (an address or number, and
consent), else by the other, else by a letter or call task on the coordinators' worklist: nobody falls through.
Care-team messages always go by email. A reminder that fails for good on one channel (a permanent refusal, a
bounce, or a channel that stopped being usable before its moment) falls back once to the next channel the patient
can be reached by, as a new outbox row whose idempotency key derives from the failed one; the one-to-one
``fallback_of`` makes a second fallback of the same row impossible, and the chain only moves forward
(email, SMS, letter), so it ends.
"""

from __future__ import annotations

import datetime as dt
import logging

from surveillance.models import Patient, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Channel

logger = logging.getLogger("surveillance.reminders.channels")

#: What the re-check at send time says when a reminder's channel can no longer reach the patient. A reminder
#: skipped for one of these falls back to the next channel; one skipped for any other reason (opted out, visit
#: done) does not.
NO_EMAIL = "patient has no email address"
NO_EMAIL_CONSENT = "patient has not consented to email"
NO_PHONE = "patient has no phone number"
NO_SMS_CONSENT = "patient has not consented to SMS"
CHANNEL_REFUSALS = frozenset({NO_EMAIL, NO_EMAIL_CONSENT, NO_PHONE, NO_SMS_CONSENT})


def channel_refusal(patient: Patient, channel: str) -> str:
    """Why ``channel`` cannot reach the patient ("" if it can). Never contains patient data."""
    if channel == Channel.EMAIL:
        if not patient.email:
            return NO_EMAIL
        if not patient.contact_consent:
            return NO_EMAIL_CONSENT
    elif channel == Channel.SMS:
        if not patient.phone:
            return NO_PHONE
        if not patient.sms_consent:
            return NO_SMS_CONSENT
    return ""


def patient_channels(patient: Patient) -> list[str]:
    """The channels that reach the patient, in the order to try them: the preferred one, the other, a letter."""
    messages = [Channel.EMAIL, Channel.SMS]
    if patient.preferred_channel == Channel.SMS:
        messages.reverse()
    return [c.value for c in messages if not channel_refusal(patient, c)] + [Channel.LETTER.value]


def reminder_channel(patient: Patient, audience: str) -> str:
    """The channel a new reminder is planned on."""
    return patient_channels(patient)[0] if audience == Audience.PATIENT else Channel.EMAIL.value


def fallback_key(failed: Reminder, channel: str) -> str:
    """The fallback row's idempotency key: the failed row's, plus the channel it moves to."""
    return f"{failed.idempotency_key}>{channel}"


def _tried(reminder: Reminder) -> set[str]:
    tried, row = set(), reminder
    while row is not None:
        tried.add(row.channel)
        row = row.fallback_of
    return tried


def fallback_create(failed: Reminder, now: dt.datetime) -> Reminder | None:
    """The row that takes a failed patient reminder to the next channel, due now; None when there is none (a
    care-team message, the last channel, or a fallback already made). Call in the transaction that records the
    failure."""
    if failed.audience != Audience.PATIENT or Reminder.objects.filter(fallback_of=failed).exists():
        return None
    patient = failed.visit.infusion.patient
    if not patient.under_follow_up or patient.reminders_opted_out_at is not None:
        return None
    tried = _tried(failed)
    order = patient_channels(patient)
    channel = next((c for c in order if c not in tried and _after(c, failed.channel)), None)
    if channel is None:
        return None
    rows = Reminder.objects.bulk_create(
        [
            Reminder(
                visit_id=failed.visit_id,
                audience=failed.audience,
                purpose=failed.purpose,
                days_before=failed.days_before,
                channel=channel,
                fallback_of=failed,
                idempotency_key=fallback_key(failed, channel),
                sequence=failed.sequence,
                send_after=now,
                next_attempt_at=now,
                status=ReminderStatus.PENDING,
            )
        ],
        ignore_conflicts=True,
    )
    logger.info("reminder=%s falls back to %s", failed.pk, channel)
    return rows[0]


def _after(candidate: str, failed: str) -> bool:
    """Fallback moves forward only (email, SMS, letter): a chain of fallbacks ends."""
    order = list(Channel.values)
    return order.index(candidate) > order.index(failed)
