"""Outbound webhooks: signed events to a centre's EHR, through an outbox like the reminders'.

Events are emitted by the transitions that cause them (a visit marked missed, a malignancy event recorded, a
patient moved to lost to follow-up), in the transaction of the change, whether one object changes or a sweep
changes many: each calls its ``*_emit`` function here, which plans one delivery row per event and endpoint with a
unique idempotency key. ``deliver_webhooks`` (Celery
beat) claims due rows by compare-and-set with a lease, posts them, and records the outcome; a failure is retried
with doubling delays, a lease that outlives a crashed worker is taken back.

An event says what happened and to which ids, never patient data: a receiver fetches details with its API token.
Each request carries ``X-CartWatch-Event``, ``X-CartWatch-Delivery`` (the idempotency key: a receiver drops a
repeat) and ``X-CartWatch-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.addresses import loopback_host
from surveillance.db.outbox_loop import outbox_batches, worker_id
from surveillance.models import (
    FollowUpVisit,
    MalignancyEvent,
    Patient,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookStatus,
)

logger = logging.getLogger("surveillance.integrations.webhooks")

SIGNATURE_HEADER = "X-CartWatch-Signature"
USER_AGENT = "CAR-T-Watch-Webhooks/1"


def _cfg(name: str, default: int) -> int:
    return int(settings.CARTWATCH.get(name, default))


def webhook_url_problem(url: str) -> str | None:
    """Why a URL cannot receive webhooks (None if it can): https only (plain http only to loopback), and a host
    that resolves to public addresses only (``webhook_address_problem``)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "must not carry credentials"
    host = (parts.hostname or "").lower()
    if not host:
        return "needs a host"
    if parts.scheme == "http" and not loopback_host(host):
        return "must use https:// (plain http only to a loopback address)"
    if parts.scheme not in ("http", "https"):
        return "must be an https:// URL"
    return webhook_address_problem(host)


def webhook_address_problem(host: str) -> str | None:
    """Why a host must not receive webhooks, from the addresses it resolves to now (None: all public).

    A webhook is a request the service makes on a caller's say-so: to a private, loopback or link-local address it
    would reach the hospital network, the service's own ports or the cloud's metadata endpoint. Loopback is allowed
    only with ``CARTWATCH_WEBHOOK_ALLOW_LOOPBACK`` (tests run their receiver there). A host that does not resolve
    passes: its deliveries fail and are retried, and every attempt checks again (names can be re-pointed).
    """
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return None
    allow_loopback = bool(settings.CARTWATCH.get("WEBHOOK_ALLOW_LOOPBACK", False))
    for text in resolved:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback:
            if not allow_loopback:
                return "must not point at a loopback address"
        elif not address.is_global or address.is_multicast:
            return "must resolve to a public address (not private, link-local or reserved)"
    return None


# --------------------------------------------------------------------------------------------- signing
def webhook_sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def webhook_signature_verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None):
    """What a receiver does: check the signature and that it is recent (replays are refused)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = webhook_sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


# --------------------------------------------------------------------------------------------- planning events
def webhook_event_emit(centre_id: int, event: str, key: str, data: dict, *, now: dt.datetime | None = None) -> int:
    """Plan one delivery of ``event`` to each endpoint of the centre that wants it; returns how many are new.

    ``key`` identifies the event: emitting it twice plans nothing more (the idempotency key is unique).
    """
    now = now or timezone.now()
    endpoints = [e for e in WebhookEndpoint.objects.filter(centre_id=centre_id, active=True) if e.wants(event)]
    if not endpoints:
        return 0
    envelope = {"id": key, "type": event, "created_at": now.isoformat(), "data": data}
    rows = [
        WebhookDelivery(
            endpoint=endpoint,
            event=event,
            idempotency_key=f"{key}:e{endpoint.pk}"[:128],
            payload=envelope,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    keys = [row.idempotency_key for row in rows]
    existing = set(WebhookDelivery.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
    new = [row for row in rows if row.idempotency_key not in existing]
    WebhookDelivery.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def visit_missed_emit(visit: FollowUpVisit) -> int:
    """The visit has just become missed (marked by the sweep or a person, or corrected to missed)."""
    patient = visit.infusion.patient
    data = {
        "visit": visit.pk,
        "patient": patient.pk,
        "infusion": visit.infusion_id,
        "centre": patient.centre.code,
        "rule_code": visit.rule_code,
        "due_date": visit.due_date.isoformat(),
        "window_end": visit.window_end.isoformat(),
    }
    key = f"visit-missed-{visit.pk}-s{visit.sequence}"
    return webhook_event_emit(patient.centre_id, WebhookEvent.VISIT_MISSED, key, data)


def malignancy_recorded_emit(event: MalignancyEvent) -> int:
    """A secondary malignancy has just been recorded against one of the patient's infusions."""
    patient = event.infusion.patient
    data = {
        "malignancy_event": event.pk,
        "patient": patient.pk,
        "infusion": event.infusion_id,
        "centre": patient.centre.code,
    }
    return webhook_event_emit(patient.centre_id, WebhookEvent.MALIGNANCY_RECORDED, f"malignancy-{event.pk}", data)


def patient_lost_emit(patient: Patient, *, on: dt.date, transition_id: int) -> int:
    """The patient has just been moved to lost to follow-up ``on`` that day; ``transition_id`` tells this move from
    a later one (the id of the audit entry that records it)."""
    data = {"patient": patient.pk, "centre": patient.centre.code, "status_date": on.isoformat()}
    key = f"lost-{patient.pk}-{transition_id}"
    return webhook_event_emit(patient.centre_id, WebhookEvent.PATIENT_LOST, key, data)


# --------------------------------------------------------------------------------------------- delivering
def webhook_leases_recover(now: dt.datetime | None = None) -> int:
    """Rows left in "sending" by a worker that died go back to pending (their attempt counted)."""
    now = now or timezone.now()
    return WebhookDelivery.objects.filter(status=WebhookStatus.SENDING, lease_expires_at__lt=now).update(
        status=WebhookStatus.PENDING, lease_expires_at=None, claimed_by="", next_attempt_at=now
    )


def webhook_claim_due(now: dt.datetime, *, limit: int, worker: str) -> list[WebhookDelivery]:
    """Claim up to ``limit`` due rows, each by compare-and-set: two workers never hold the same row."""
    lease = now + dt.timedelta(seconds=_cfg("WEBHOOK_LEASE_SECONDS", 120))
    candidates = list(
        WebhookDelivery.objects.filter(status=WebhookStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[: limit * 2]
    )
    claimed = []
    for pk in candidates:
        won = WebhookDelivery.objects.filter(pk=pk, status=WebhookStatus.PENDING, next_attempt_at__lte=now).update(
            status=WebhookStatus.SENDING, lease_expires_at=lease, claimed_by=worker
        )
        if won:
            claimed.append(pk)
        if len(claimed) >= limit:
            break
    return list(WebhookDelivery.objects.filter(pk__in=claimed).select_related("endpoint").order_by("pk"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a redirect is an answer (3xx), not an invitation to post elsewhere


_opener = urllib.request.build_opener(_NoRedirect)


def webhook_post(delivery: WebhookDelivery, *, timeout: float) -> tuple[int | None, str]:
    """POST the payload once; returns (HTTP status or None, error text without the body)."""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-CartWatch-Event": delivery.event,
            "X-CartWatch-Delivery": delivery.idempotency_key,
            SIGNATURE_HEADER: webhook_sign(delivery.endpoint.secret, body, int(time.time())),
        },
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"[:500]


def _retryable(code: int | None) -> bool:
    return code is None or code in (408, 425, 429) or code >= 500


def webhook_deliver(delivery: WebhookDelivery, *, now: dt.datetime | None = None) -> str:
    """Post one claimed row and record the outcome; returns the new status. A target that now resolves to an
    address webhooks must not reach fails at once, unposted."""
    refused = webhook_address_problem(urlsplit(delivery.endpoint.url).hostname or "")
    code, error = (
        (None, f"refused: {refused}")
        if refused
        else webhook_post(delivery, timeout=_cfg("WEBHOOK_TIMEOUT_SECONDS", 10))
    )
    now = now or timezone.now()
    attempts = delivery.attempts + 1
    values: dict = {"attempts": attempts, "last_status_code": code, "lease_expires_at": None, "claimed_by": ""}
    if code is not None and 200 <= code < 300:
        values.update(status=WebhookStatus.DELIVERED, delivered_at=now, last_error="")
    elif not refused and _retryable(code) and attempts < _cfg("WEBHOOK_MAX_ATTEMPTS", 8):
        delivery.attempts = attempts
        values.update(
            status=WebhookStatus.PENDING,
            next_attempt_at=now + delivery.backoff(_cfg("WEBHOOK_RETRY_SECONDS", 60)),
            last_error=error or f"HTTP {code}",
        )
    else:
        values.update(status=WebhookStatus.FAILED, last_error=error or f"HTTP {code}")
    # Only the holder of the lease records the outcome (a reclaimed row belongs to someone else now).
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookStatus.SENDING, claimed_by=delivery.claimed_by).update(
        **values
    )
    logger.info(
        "webhook delivery=%s endpoint=%s event=%s attempt=%s status=%s code=%s",
        delivery.pk,
        delivery.endpoint_id,
        delivery.event,
        attempts,
        values["status"],
        code,
    )
    return values["status"]


#: Deliveries a redelivery may put back: those that ended. One pending or being sent is on its way already.
REDELIVERABLE = (WebhookStatus.FAILED, WebhookStatus.DELIVERED)


def webhook_redeliver(delivery_ids: list[int], *, by=None, now: dt.datetime | None = None) -> int:
    """Put ended deliveries back in the outbox, due now with a full allowance of attempts; returns how many.

    Nothing is posted here: the next ``webhooks_deliver_due`` run claims and posts them like any delivery, signed
    afresh, with the same ``X-CartWatch-Delivery`` id (a receiver that kept the first drops the repeat). Each row
    moves by compare-and-set on the status it was read with, and each move is audited with what it replaced.
    """
    now = now or timezone.now()
    moved = 0
    ended = WebhookDelivery.objects.filter(pk__in=delivery_ids, status__in=REDELIVERABLE).order_by("pk")
    with transaction.atomic():
        for pk, status, attempts in ended.values_list("pk", "status", "attempts"):
            won = WebhookDelivery.objects.filter(pk=pk, status=status).update(
                status=WebhookStatus.PENDING, attempts=0, next_attempt_at=now, delivered_at=None
            )
            if not won:
                continue
            moved += 1
            audit_write(
                "webhook_redeliver",
                object_type="webhookdelivery",
                object_id=pk,
                changes={"status": [status, WebhookStatus.PENDING], "attempts": attempts},
                by=by,
            )
    return moved


def webhooks_deliver_batch(now: dt.datetime | None = None, *, worker: str | None = None) -> int:
    """Claim and post one batch; returns how many rows it handled (0: nothing is due)."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = webhook_claim_due(now, limit=_cfg("WEBHOOK_BATCH_SIZE", 50), worker=worker or worker_id())
    for delivery in claimed:
        webhook_deliver(delivery)
    return len(claimed)


def webhooks_deliver_due(*, budget_seconds: float | None = None) -> int:
    """Recover stale leases, then deliver batches until nothing is due or the time budget is spent."""
    budget = budget_seconds if budget_seconds is not None else _cfg("WEBHOOK_BUDGET_SECONDS", 50)
    webhook_leases_recover()
    worker = worker_id()
    batches = outbox_batches(lambda: webhooks_deliver_batch(worker=worker), handled=int, budget_seconds=budget)
    return sum(batches)
