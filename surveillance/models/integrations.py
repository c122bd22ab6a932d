"""Integrations: API tokens of EHR interfaces, and the webhook endpoints and outbox that notify them."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import models
from django.utils.translation import gettext_lazy as _

from surveillance.models.centres import TreatmentCentre
from surveillance.seeds.labels import choice_label

TOKEN_PREFIX = "cwt"


def api_key_digest(raw_key: str) -> str:
    """SHA-256 of a key: what is stored; the key itself is shown once and never kept."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def live(self, now: dt.datetime) -> ApiTokenQuerySet:
        """Tokens that authenticate at ``now``: not revoked, not expired."""
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now), revoked_at__isnull=True)


class ApiToken(models.Model):
    """A per-integration credential: scoped to one or more centres, read-only or read-write, revocable.

    The key is ``cwt_<prefix>_<secret>``; only its SHA-256 is stored, the prefix identifies it in lists and logs.
    """

    name = models.CharField(max_length=100, unique=True, help_text=_("Who uses it, e.g. 'epic-interface-a'."))
    prefix = models.CharField(max_length=16, unique=True)
    key_sha256 = models.CharField(max_length=64, unique=True)
    centres = models.ManyToManyField(TreatmentCentre, related_name="api_tokens")
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text=_("The token stops working at this moment; empty: until revoked.")
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("API token")

    def __str__(self) -> str:
        return f"API token {self.name} ({self.prefix})"

    @staticmethod
    def new_key() -> tuple[str, str]:
        """A fresh (prefix, raw key) pair."""
        prefix = secrets.token_hex(4)
        return prefix, f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class WebhookEvent(models.TextChoices):
    VISIT_MISSED = "visit.missed", _("Visit missed")
    MALIGNANCY_RECORDED = "malignancy_event.recorded", _("Malignancy event recorded")
    PATIENT_LOST = "patient.lost_to_follow_up", _("Patient lost to follow-up")


class WebhookEndpoint(models.Model):
    """A URL of a centre's EHR that receives signed events (HMAC-SHA256 over the body with ``secret``)."""

    centre = models.ForeignKey(TreatmentCentre, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=64, help_text=_("Shared signing secret, shown once at registration."))
    events = models.JSONField(default=list, help_text=_("Event types to receive; empty means all."))
    active = models.BooleanField(default=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["centre", "pk"]

    def __str__(self) -> str:
        return f"Webhook {self.pk} of centre {self.centre_id}"

    @staticmethod
    def new_secret() -> str:
        return secrets.token_hex(32)

    def wants(self, event: str) -> bool:
        return self.active and (not self.events or event in self.events)


class WebhookStatus(models.TextChoices):
    PENDING = "pending", choice_label("webhook.pending")
    SENDING = "sending", choice_label("webhook.sending")
    DELIVERED = "delivered", choice_label("webhook.delivered")
    FAILED = "failed", choice_label("webhook.failed")


class WebhookDelivery(models.Model):
    """One event for one endpoint: an outbox row claimed by compare-and-set, retried with backoff."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32, choices=WebhookEvent.choices)
    idempotency_key = models.CharField(max_length=128)
    payload = models.JSONField(help_text=_("Ids and dates only, never patient data."))
    status = models.CharField(max_length=10, choices=WebhookStatus.choices, default=WebhookStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            # one index for the key: unique=True on a text column adds a LIKE-pattern twin on PostgreSQL, which no
            # query reads and every claim and outcome of the row would write to
            models.UniqueConstraint(fields=["idempotency_key"], name="webhook_idempotency_key_unique"),
            models.CheckConstraint(condition=models.Q(status__in=WebhookStatus.values), name="webhook_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=WebhookStatus.DELIVERED) | models.Q(delivered_at__isnull=False),
                name="webhook_delivered_has_time",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=WebhookStatus.SENDING) | models.Q(lease_expires_at__isnull=False),
                name="webhook_sending_has_lease",
            ),
        ]
        indexes = [
            # deliver_webhooks' claim query: pending rows whose next attempt is due
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="webhook_due_idx"),
            # deliver_webhooks' lease recovery: rows stuck in "sending" after a worker died
            models.Index(fields=["lease_expires_at"], condition=models.Q(status="sending"), name="webhook_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"Webhook delivery {self.pk} ({self.event}) {self.status}"

    def backoff(self, base_seconds: int) -> dt.timedelta:
        """Delay before the next attempt: doubling from ``base_seconds``, at most a day."""
        return dt.timedelta(seconds=min(base_seconds * 2 ** max(self.attempts - 1, 0), 86400))


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a token sent with a POST: what the request was and, once answered, the answer.

    A client that timed out retries with the same key and gets the first answer back instead of a second infusion
    or a second import. The key is unique per token (two integrations may pick the same key); the fingerprint is a
    hash of the request, so the same key on a different request is refused rather than answered with a stale reply.
    A row without a status code is a request still in flight.
    """

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_sha256 = models.CharField(max_length=64, help_text=_("SHA-256 of the method, path, content type and body."))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, help_text=_("Empty while in flight."))
    response_body = models.JSONField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_key_unique_per_token"),
            models.CheckConstraint(
                condition=models.Q(status_code__isnull=True) | models.Q(response_body__isnull=False),
                name="idempotency_answer_has_body",
            ),
        ]
        indexes = [
            # idempotency_keys_purge: keys older than the retention period
            models.Index(fields=["created_at"], name="idempotency_purge_idx"),
        ]

    def __str__(self) -> str:
        return f"Idempotency key {self.pk} of token {self.token_id}"

    @property
    def answered(self) -> bool:
        return self.status_code is not None
