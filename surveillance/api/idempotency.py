"""``Idempotency-Key`` on the API's POSTs: a retried request gets the first answer instead of a second write.

An EHR interface that timed out cannot know whether its ``POST /infusions`` was applied; retrying it with the same
key is safe. The key is claimed (a row, unique per token) before the request is handled, and the answer is stored
on it afterwards; a retry with the same request gets that answer back, marked ``Idempotent-Replayed: true``. The
same key on a different request (another path or body) is refused with 422, and one whose first request is still
being handled with 409. Answers a retry could change (a 409 conflict, a 429, any server error) are not kept: the
claim is released and the retry runs afresh. Keys are kept ``IDEMPOTENCY_KEY_HOURS`` and then purged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from surveillance.api.exceptions import Conflict, IdempotencyKeyReused
from surveillance.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Answers that depend on the moment rather than on the request: a retry must run again.
NOT_KEPT = frozenset({409, 429})


class Replay(Exception):
    """The request was answered before: ``response`` is that answer."""

    def __init__(self, response: Response):
        super().__init__("idempotent replay")
        self.response = response


def idempotency_key_of(request) -> str | None:
    """The request's key, checked; None when it sent none."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise exceptions.ValidationError({HEADER: [f"1 to {MAX_KEY_LENGTH} printable ASCII characters"]})
    return key


def request_fingerprint(request, body_limit: int) -> str | None:
    """SHA-256 of what makes two requests the same one: method, path with query, content type and body.

    The body is read here (at most ``body_limit`` bytes) and put back for the view to read as usual. None when it
    is larger than the limit: the view refuses it (413) and there is nothing to keep.
    """
    django_request = request._request
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > body_limit:
        return None
    body = django_request.read(body_limit + 1)
    if len(body) > body_limit:
        return None
    django_request._stream = io.BytesIO(body)
    django_request._read_started = False
    digest = hashlib.sha256()
    for part in (request.method, django_request.get_full_path(), request.content_type or ""):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\x00")
    digest.update(body)
    return digest.hexdigest()


def idempotency_key_claim(
    token_id: int, key: str, fingerprint: str, *, now: dt.datetime | None = None
) -> IdempotencyKey:
    """Claim the key for this request (committed at once, so a concurrent retry sees it).

    Raises ``Replay`` with the stored answer when the same request was answered before, ``IdempotencyKeyReused``
    when the key came with another request, ``Conflict`` while the first request is still being handled.
    """
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(
                token_id=token_id, key=key, request_sha256=fingerprint, created_at=now or timezone.now()
            )
    except IntegrityError:
        pass
    row = IdempotencyKey.objects.filter(token_id=token_id, key=key).first()
    if row is None or not row.answered:  # released or purged meanwhile, or still in flight: retry later
        if row is not None and row.request_sha256 != fingerprint:
            raise IdempotencyKeyReused()
        raise Conflict("A request with this Idempotency-Key is still being handled; retry in a moment.")
    if row.request_sha256 != fingerprint:
        raise IdempotencyKeyReused()
    headers = {REPLAYED_HEADER: "true"}
    raise Replay(
        Response(row.response_body, status=row.status_code, headers=headers, content_type=row.content_type or None)
    )


def idempotency_key_answer(row: IdempotencyKey, response: Response) -> bool:
    """Keep the answer on the claimed key (compare-and-set on an unanswered claim), or release the claim when a
    retry should run again. Returns whether the answer was kept."""
    if response.status_code >= 500 or response.status_code in NOT_KEPT or not hasattr(response, "data"):
        idempotency_key_release(row)
        return False
    body = json.loads(json.dumps(response.data, cls=JSONEncoder))
    content_type = response.content_type or ""
    return bool(
        IdempotencyKey.objects.filter(pk=row.pk, status_code__isnull=True).update(
            status_code=response.status_code, response_body=body, content_type=content_type[:100]
        )
    )


def idempotency_key_release(row: IdempotencyKey) -> None:
    """Forget an unanswered claim (the request failed), so that a retry with the key is handled afresh."""
    IdempotencyKey.objects.filter(pk=row.pk, status_code__isnull=True).delete()


def idempotency_keys_purge(now: dt.datetime | None = None) -> int:
    """Delete keys older than ``IDEMPOTENCY_KEY_HOURS`` (their stored answers may hold patient data); returns how
    many."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.CARTWATCH["IDEMPOTENCY_KEY_HOURS"])
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
