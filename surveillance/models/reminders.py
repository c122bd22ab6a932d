"""The reminder outbox and its delivery log.

A reminder is a row, not a Celery ETA task: far-future ETA tasks duplicate under Redis visibility timeouts and
vanish with the broker. The dispatcher claims due rows by compare-and-set and records every attempt.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.visits import FollowUpVisit
from surveillance.seeds.labels import choice_label


class Audience(models.TextChoices):
    PATIENT = "patient", _("Patient")
    CARE_TEAM = "care_team", _("Care team")


class Purpose(models.TextChoices):
    UPCOMING = "upcoming", _("Upcoming visit")
    WINDOW_OPEN = "window_open", _("Visit window open")
    OVERDUE = "overdue", _("Overdue escalation")
    MISSED = "missed", _("Missed visit")
    MOVED = "moved", _("Visit moved")
    CANCELLED = "cancelled", _("Visit cancelled")


#: Patient messages that carry the visit's calendar entry (REQUEST, or CANCEL for a cancelled visit).
PATIENT_CALENDAR_PURPOSES = (Purpose.UPCOMING, Purpose.MOVED, Purpose.CANCELLED)

#: Care-team notices told in the centre's daily digest (``reminders.digests``) rather than one email each: news,
#: not escalations. Overdue and missed visits stay immediate emails.
DIGEST_PURPOSES = (Purpose.WINDOW_OPEN,)
_IN_DIGEST = models.Q(audience=Audience.CARE_TEAM, purpose__in=DIGEST_PURPOSES)


class Channel(models.TextChoices):
    """How a reminder reaches its recipient. A letter is a task on the coordinators' worklist (a letter to print
    or a call to make), for patients no message can reach."""

    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    LETTER = "letter", _("Letter or call")


class ReminderStatus(models.TextChoices):
    PENDING = "pending", choice_label("reminder.pending")
    SENDING = "sending", choice_label("reminder.sending")
    SENT = "sent", choice_label("reminder.sent")
    FAILED = "failed", choice_label("reminder.failed")
    BOUNCED = "bounced", choice_label("reminder.bounced")
    CANCELLED = "cancelled", choice_label("reminder.cancelled")
    SKIPPED = "skipped", choice_label("reminder.skipped")


class ReminderQuerySet(models.QuerySet):
    def due(self, at: dt.datetime) -> ReminderQuerySet:
        """Pending rows the dispatcher sends whose next attempt falls at or before ``at`` (its partial index serves
        it). The daily digest's notices wait for their digest instead (``digest_due``)."""
        return self.filter(status=ReminderStatus.PENDING, next_attempt_at__lte=at).exclude(_IN_DIGEST)

    def claim(self, token: str, lease_expires_at: dt.datetime, now: dt.datetime) -> int:
        """``pending -> sending`` for ``token`` with a lease, one attempt more, by compare-and-set: a row another
        worker took meanwhile is not counted. Returns how many rows this caller won."""
        return self.filter(status=ReminderStatus.PENDING).update(
            status=ReminderStatus.SENDING,
            lease_expires_at=lease_expires_at,
            claimed_by=token,
            attempts=models.F("attempts") + 1,
            updated_at=now,
        )

    def digest_due(self, before: dt.datetime) -> ReminderQuerySet:
        """Pending notices of the daily digest whose moment comes before ``before`` (``reminder_digest_due_idx``)."""
        return self.filter(_IN_DIGEST, status=ReminderStatus.PENDING, next_attempt_at__lt=before)


class Reminder(models.Model):
    """One message to send: a visit x audience x purpose (x days before), with the moment it must go out."""

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="reminders")
    audience = models.CharField(max_length=10, choices=Audience.choices)
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    days_before = models.SmallIntegerField(default=0)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.EMAIL, db_default=Channel.EMAIL)
    fallback_of = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="fallback",
        help_text=_("The reminder that failed on another channel; one to one, so a failure falls back once."),
    )
    idempotency_key = models.CharField(max_length=128)  # unique: reminder_idempotency_key_unique
    sequence = models.PositiveIntegerField(
        help_text=_("The visit's iCalendar sequence this row was planned for (a moved visit's rows are stale).")
    )
    send_after = models.DateTimeField(help_text=_("UTC; computed as a morning hour in the patient's time zone."))
    status = models.CharField(max_length=10, choices=ReminderStatus.choices, default=ReminderStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(help_text=_("When the dispatcher may (re)try; send_after at first."))
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    provider_message_id = models.CharField(
        max_length=64, blank=True, help_text=_("The provider's id of the accepted message (an SMS's SID).")
    )
    last_error = models.CharField(max_length=500, blank=True)
    last_smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=255, blank=True, help_text=_("Why it was skipped or cancelled."))
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ReminderQuerySet.as_manager()

    class Meta:
        verbose_name = _("reminder")
        verbose_name_plural = _("reminders")
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
            models.CheckConstraint(condition=models.Q(channel__in=Channel.values), name="reminder_channel_valid"),
            models.CheckConstraint(
                condition=models.Q(channel=Channel.EMAIL) | models.Q(audience=Audience.PATIENT),
                name="reminder_care_team_by_email",
            ),
            # A constraint rather than the field's unique=True, which on PostgreSQL adds a second index (for LIKE
            # patterns) that no query uses and that every claim and every outcome, moving a row to new index
            # entries, writes too.
            models.UniqueConstraint(fields=["idempotency_key"], name="reminder_idempotency_key_unique"),
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
            # the daily digest's query (``digest_due``): window-open notices waiting for their centre's digest
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending", audience="care_team", purpose="window_open"),
                name="reminder_digest_due_idx",
            ),
            # the "failed reminders" worklist and its count, in the list's order: the few undelivered rows among
            # every reminder ever sent
            models.Index(
                fields=["send_after", "id"],
                condition=models.Q(status__in=["failed", "bounced"]),
                name="reminder_failed_worklist_idx",
            ),
            # delivery callbacks (an SMS status) find the reminder by the provider's id of the message
            models.Index(
                fields=["provider_message_id"],
                condition=~models.Q(provider_message_id=""),
                name="reminder_provider_id_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Reminder {self.pk} ({self.audience}/{self.purpose}/{self.channel}) {self.status}"

    def is_stale(self, now: dt.datetime) -> bool:
        """A notice whose moment has passed must not go out late.

        "Your visit is on ..." is stale once the due date has passed (in the recipient's time zone), "the window
        is open" once the window has closed. Escalations (overdue, missed) are never stale: the care team must
        hear of them however late.
        """
        visit = self.visit
        patient = visit.infusion.patient
        tz = patient.tz if self.audience == Audience.PATIENT else patient.centre.tz
        today = now.astimezone(tz).date()
        if self.purpose in (Purpose.UPCOMING, Purpose.MOVED):
            return today > visit.due_date
        if self.purpose == Purpose.WINDOW_OPEN:
            return today > visit.window_end
        return False


class DeliveryOutcome(models.TextChoices):
    SENDING = "sending", _("Handed to the mail server or SMS provider, outcome not yet recorded")
    SENT = "sent", _("Sent")
    RETRY = "retry", _("Temporary failure, will retry")
    FAILED = "failed", _("Permanent failure")
    SKIPPED = "skipped", _("Skipped at send time")
    RECLAIMED = "reclaimed", _("Lease expired, reclaimed")


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
        default=False, help_text=_("A re-send after a crash that may have followed an accepted send.")
    )

    class Meta:
        ordering = ["reminder", "attempt", "pk"]
        verbose_name_plural = _("deliveries")

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {self.outcome}"


class LetterTask(models.Model):
    """A letter to print or a call to make, on the coordinators' worklist, for a patient no message reaches.

    One per visit x purpose x sequence (the unique key): a visit's second reminder finds the open task instead of
    adding another. Marking it done records the contact attempt.
    """

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="letter_tasks")
    reminder = models.OneToOneField(Reminder, on_delete=models.CASCADE, related_name="letter_task")
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    sequence = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    contact_attempt = models.OneToOneField(
        "surveillance.ContactAttempt", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["visit", "purpose", "sequence"], name="letter_task_one_per_notice"),
            models.CheckConstraint(
                condition=models.Q(done_at__isnull=True) | models.Q(contact_attempt__isnull=False),
                name="letter_task_done_has_attempt",
            ),
        ]
        indexes = [
            # the worklist "Letters and calls to make": open tasks, oldest first
            models.Index(fields=["created_at"], condition=models.Q(done_at__isnull=True), name="letter_task_open_idx"),
        ]

    def __str__(self) -> str:
        return f"Letter task {self.pk} (visit {self.visit_id}, {self.purpose})"


class PreparedMessage(models.Model):
    """A reminder's email rendered ahead of its moment, so that the 09:00 burst only hands bytes to the server.

    Rendering (templates, calendar entry, signed links, MIME) costs more than the SMTP transaction itself; done in
    the hour before, it no longer delays the messages due at the same minute. The bytes are used only while the
    fingerprint of what they were made of still matches at send time; otherwise the dispatcher renders afresh.
    The row is deleted once its reminder is dealt with, so rendered emails do not pile up.
    """

    reminder = models.OneToOneField(Reminder, on_delete=models.CASCADE, primary_key=True, related_name="prepared")
    fingerprint = models.CharField(max_length=64)
    raw = models.BinaryField(help_text=_("The whole message (RFC 5322, CRLF line ends) as the server receives it."))
    prepared_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Prepared message of reminder {self.reminder_id}"


class DispatcherRun(models.Model):
    """When a dispatcher last completed a run (one row per worker id); the health probe reads the newest."""

    worker = models.CharField(max_length=64, unique=True)
    finished_at = models.DateTimeField()
    handled = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-finished_at"]

    def __str__(self) -> str:
        return f"dispatcher {self.worker} at {self.finished_at:%Y-%m-%d %H:%M:%S}"


class DigestRun(models.Model):
    """What a care-team digest row records of the run that sends it: when it was claimed
    (``reminders.digests.digest_claim``), when it went out with which Message-ID, or why it did not."""

    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        abstract = True


class CareTeamDigest(DigestRun):
    """One weekly digest per centre and week: the unique key makes a second beat or a re-run send nothing."""

    centre = models.ForeignKey("surveillance.TreatmentCentre", on_delete=models.CASCADE, related_name="digests")
    week_start = models.DateField()

    class Meta:
        ordering = ["-week_start", "centre"]
        constraints = [models.UniqueConstraint(fields=["centre", "week_start"], name="digest_one_per_centre_week")]

    def __str__(self) -> str:
        return f"digest {self.centre_id} week of {self.week_start}"


class CareTeamDailyDigest(DigestRun):
    """One daily digest per centre and centre-local day: the visits whose window opened, in one email.

    The unique key makes a second beat or a re-run claim nothing. A day with nothing to tell is settled without
    an email, so notices planned later that day wait for the next morning's digest instead of going out alone.
    """

    centre = models.ForeignKey("surveillance.TreatmentCentre", on_delete=models.CASCADE, related_name="daily_digests")
    day = models.DateField(help_text=_("The centre's local date."))
    settled_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the day's notices were dealt with: sent (``sent_at``), skipped or none."),
    )
    listed = models.PositiveIntegerField(default=0, help_text=_("Window-open notices the email listed."))
    skipped = models.PositiveIntegerField(default=0, help_text=_("Notices skipped as stale or no longer applying."))

    class Meta:
        ordering = ["-day", "centre"]
        constraints = [models.UniqueConstraint(fields=["centre", "day"], name="daily_digest_one_per_centre_day")]

    def __str__(self) -> str:
        return f"daily digest {self.centre_id} of {self.day}"
