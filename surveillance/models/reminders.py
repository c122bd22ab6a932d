"""The reminder outbox and its delivery log.

A reminder is a row, not a Celery ETA task: far-future ETA tasks duplicate under Redis visibility timeouts and
vanish with the broker. The dispatcher claims due rows by compare-and-set and records every attempt.
"""

from __future__ import annotations

import datetime as dt

from django.db import models

from surveillance.models.visits import FollowUpVisit


class Audience(models.TextChoices):
    PATIENT = "patient", "Patient"
    CARE_TEAM = "care_team", "Care team"


class Purpose(models.TextChoices):
    UPCOMING = "upcoming", "Upcoming visit"
    WINDOW_OPEN = "window_open", "Visit window open"
    OVERDUE = "overdue", "Overdue escalation"
    MISSED = "missed", "Missed visit"


class ReminderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


class Reminder(models.Model):
    """One message to send: a visit x audience x purpose (x days before), with the moment it must go out."""

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="reminders")
    audience = models.CharField(max_length=10, choices=Audience.choices)
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    days_before = models.SmallIntegerField(default=0)
    idempotency_key = models.CharField(max_length=128, unique=True)
    send_after = models.DateTimeField(help_text="UTC; computed as a morning hour in the patient's time zone.")
    status = models.CharField(max_length=10, choices=ReminderStatus.choices, default=ReminderStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text="When the dispatcher may (re)try; send_after at first.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=255, blank=True, help_text="Why it was skipped or cancelled.")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["send_after", "pk"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=ReminderStatus.values), name="reminder_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=ReminderStatus.SENT) | models.Q(sent_at__isnull=False),
                name="reminder_sent_has_time",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=ReminderStatus.SENDING) | models.Q(lease_expires_at__isnull=False),
                name="reminder_sending_has_lease",
            ),
        ]
        indexes = [
            # the dispatcher's claim query: pending rows whose next attempt is due
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="reminder_dispatch_due_idx",
            ),
            # lease recovery: rows stuck in "sending" after a worker died
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="sending"),
                name="reminder_lease_recovery_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Reminder {self.pk} ({self.audience}/{self.purpose}) {self.status}"

    def is_stale(self, now: dt.datetime) -> bool:
        """A patient reminder for a visit whose window has closed must not go out late."""
        visit_end = self.visit.window_end
        return now.date() > visit_end and self.purpose in (Purpose.UPCOMING, Purpose.WINDOW_OPEN)


class DeliveryOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    RETRY = "retry", "Temporary failure, will retry"
    FAILED = "failed", "Permanent failure"
    SKIPPED = "skipped", "Skipped at send time"
    RECLAIMED = "reclaimed", "Lease expired, reclaimed"


class Delivery(models.Model):
    """Every attempt leaves a row: the outcome, the SMTP code and ids only (never PHI)."""

    reminder = models.ForeignKey(Reminder, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=10, choices=DeliveryOutcome.choices)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=64, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    possible_duplicate = models.BooleanField(
        default=False, help_text="A re-send after a crash that may have followed an accepted send."
    )

    class Meta:
        ordering = ["reminder", "attempt", "pk"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.outcome}"
