"""Per-integration API tokens: ``Authorization: Bearer cwt_...``; and the principal a token stands for.

A token is not a person: it authenticates as a ``TokenPrincipal`` that carries the token's centres (so
``tenancy.user_centre_ids`` and ``tenancy.scope`` work unchanged), whether it may write, and the token's name,
which audit rows record as the actor.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver
from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from surveillance.access.audit import audit_actor_label, audit_write
from surveillance.access.second_factor import session_second_factor_ok
from surveillance.api.shared_cache import cache_is_shared, shared_redis
from surveillance.models import ApiToken, TreatmentCentre
from surveillance.models.audit import AuditActor
from surveillance.models.integrations import TOKEN_PREFIX, api_key_digest

if TYPE_CHECKING:
    from surveillance.api.throttling import Counted

#: ``last_used_at`` is refreshed at most this often, so a busy token does not write on every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
#: How long a token read from the database is kept in a shared cache (``api_token_authenticate``). A revocation or
#: a change of centres takes effect at once all the same (``api_token_forget``); ``last_used_at`` is refreshed
#: when the token is read again, so it lags by up to this much more than ``LAST_USED_RESOLUTION``.
TOKEN_CACHE_SECONDS = 60
#: What a forgotten token's cache entry holds meanwhile: "read me from the database".
_FORGOTTEN = "forgotten"


@dataclass(frozen=True)
class TokenIdentity:
    """What serving a request needs to know of its token: read with the token's centres in one query.

    Not a model row, so nothing can save a partly read token back over the stored one.
    """

    pk: int
    name: str
    read_only: bool
    #: The SHA-256 of its key, which names it where it is kept and counted in the shared cache.
    digest: str


class TokenPrincipal(AnonymousUser):
    """The caller behind an API token: authenticated, scoped to the token's centres, never a superuser."""

    is_active = True
    is_superuser = False
    is_staff = False

    def __init__(self, token: TokenIdentity, centre_ids: list[int], counted=None):
        self.token = token
        self._centre_ids = centre_ids  # read by tenancy.user_centre_ids
        self.counted = counted  # this request, counted against the rate limit as the token was read (throttling)
        self.pk = self.id = None
        self.username = f"token:{token.name}"

    @property
    def is_anonymous(self) -> bool:  # type: ignore[override]
        return False

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    @property
    def audit_label(self) -> str:
        return audit_actor_label(AuditActor.API_TOKEN, self.token.name)

    def __str__(self) -> str:
        return self.username


def api_token_create(
    name: str,
    centres: list[TreatmentCentre],
    *,
    read_only: bool = False,
    expires_at: dt.datetime | None = None,
    by=None,
) -> tuple[ApiToken, str]:
    """Issue a token; returns the row and the raw key, which is shown once and never stored.

    Every entry point (the admin's page, ``create_api_token``) issues through here, so each issue is audited the
    same way: who (``by``, else the system), the token's name, prefix, centres, access and expiry; never the key.
    """
    if not centres:
        raise ValueError("a token needs at least one centre")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("a token's expiry must be in the future")
    prefix, raw = ApiToken.new_key()
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name, prefix=prefix, key_sha256=api_key_digest(raw), read_only=read_only, expires_at=expires_at
        )
        # Rows added directly: a new token has no cache entry, nor can a request have read it before this commits,
        # so ``api_token_forget``'s marker (which the m2m signal would set) would only keep it out of the cache.
        ApiToken.centres.through.objects.bulk_create(
            [ApiToken.centres.through(apitoken=token, treatmentcentre=centre) for centre in centres]
        )
        _token_audit(
            "token_issue",
            token,
            by,
            {
                "name": name,
                "prefix": prefix,
                "centres": sorted(c.code for c in centres),
                "read_only": read_only,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return token, raw


def token_expiry(last_day: dt.date, tz: dt.tzinfo) -> dt.datetime:
    """When a token that works through ``last_day`` (in ``tz``) stops: that day's midnight at its end."""
    return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=tz)


def api_token_revoke(token: ApiToken, now: dt.datetime | None = None, *, by=None) -> bool:
    """Revoke once (compare-and-set), audited; False if it was already revoked."""
    with transaction.atomic():
        won = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now or timezone.now())
        if won:
            _token_audit("token_revoke", token, by, {"name": token.name, "prefix": token.prefix})
            api_token_forget(token)
    return bool(won)


def _token_audit(action: str, token: ApiToken, by, changes: dict) -> None:
    audit_write(action, object_type="apitoken", object_id=token.pk, changes=changes, by=by)


def api_token_authenticate(raw: str, now: dt.datetime | None = None) -> TokenPrincipal | None:
    """The principal for a raw key, or None if it is unknown, revoked or expired.

    Read from the database (one query: the token and its centres), or, where the cache is shared by every worker
    (Redis), from the cache, which keeps what that query read for ``TOKEN_CACHE_SECONDS``: a request then costs
    one round trip to Redis, which also counts it against the token's rate limit, instead of one to PostgreSQL.
    Either way a revocation, an expiry or a change of centres holds from the next request on, in every worker
    (``api_token_forget``; the expiry is in the entry).
    """
    if not raw.startswith(f"{TOKEN_PREFIX}_") or len(raw) > 200:
        return None
    now = now or timezone.now()
    digest = api_key_digest(raw)
    shared = cache_is_shared()
    entry, counted = _entry_read(digest) if shared else (None, None)
    if entry is None or entry == _FORGOTTEN:
        rows = list(
            ApiToken.objects.live(now)
            .filter(key_sha256=digest)
            .order_by()
            .values_list("pk", "name", "read_only", "expires_at", "last_used_at", "centres")
        )
        if not rows:
            return None
        pk, name, read_only, expires_at, last_used_at, _ = rows[0]
        if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=pk).update(last_used_at=now)
        centre_ids = sorted(row[5] for row in rows if row[5] is not None)
        if shared and entry is None:
            _entry_add(
                digest, [pk, name, read_only, None if expires_at is None else expires_at.isoformat(), centre_ids]
            )
    else:
        pk, name, read_only, expires_at, centre_ids = entry
        if expires_at is not None and dt.datetime.fromisoformat(expires_at) <= now:
            return None
    return TokenPrincipal(TokenIdentity(pk, name, read_only, digest), centre_ids, counted)


def _entry_key(digest: str) -> str:
    return cache.make_key(f"api-token:{digest}")


def _entry_read(digest: str) -> tuple[list | str | None, Counted | None]:
    """The cached token (a JSON list), ``_FORGOTTEN``, or None when nothing is cached; and, in the same round trip,
    the request counted against the token's rate limit, which the throttle then takes instead of asking again."""
    from surveillance.api.throttling import PerTokenRateThrottle  # which imports this module

    pipe = shared_redis().pipeline(transaction=False)
    pipe.get(_entry_key(digest))
    count = PerTokenRateThrottle.token_count_queue(pipe, digest)
    found, *counts = pipe.execute()
    counted = count(counts)
    if found is None:
        return None, counted
    return (_FORGOTTEN if found == _FORGOTTEN.encode() else json.loads(found)), counted


def _entry_add(digest: str, entry: list) -> None:
    """Keep the token's entry, only where nothing is: never over a forgotten token's marker."""
    shared_redis().set(_entry_key(digest), json.dumps(entry), ex=TOKEN_CACHE_SECONDS, nx=True)


def api_token_forget(token: ApiToken) -> None:
    """Make every worker read ``token`` from the database again: it was revoked, or its centres changed.

    Its cache entry is replaced by a marker that lasts as long as an entry would, both now and once the change
    commits: a request that read the row just before the change cannot put its copy back meanwhile (entries are
    only ever added where nothing is).
    """
    if not cache_is_shared():
        return
    key = _entry_key(token.key_sha256)

    def forget() -> None:
        shared_redis().set(key, _FORGOTTEN, ex=TOKEN_CACHE_SECONDS)

    forget()
    transaction.on_commit(forget)


@receiver(post_save, sender=ApiToken, dispatch_uid="cartwatch_api_token_saved")
def _on_token_saved(sender, instance: ApiToken, created: bool, **kwargs) -> None:
    if not created:
        api_token_forget(instance)


@receiver(m2m_changed, sender=ApiToken.centres.through, dispatch_uid="cartwatch_api_token_centres_changed")
def _on_token_centres_changed(sender, instance, action: str, reverse: bool, pk_set, **kwargs) -> None:
    """A token's centres changed (from either side: ``token.centres`` or ``centre.api_tokens``)."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        api_token_forget(instance)
    else:
        tokens = instance.api_tokens.all() if action == "pre_clear" else ApiToken.objects.filter(pk__in=pk_set)
        for token in tokens:
            api_token_forget(token)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>`` (``Token <key>`` is accepted too)."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        principal = api_token_authenticate(raw)
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        return principal, principal.token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class VerifiedSessionAuthentication(authentication.SessionAuthentication):
    """A staff session from the admin, accepted only if it gave its second factor when its user needs one.

    The admin's sign-in asks enrolled staff for a code and django-otp's middleware marks the session verified;
    a session that was not (signed in before enrolment, or before ``CARTWATCH_REQUIRE_2FA``) must sign in again
    rather than reach patient data with a password alone.
    """

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None and not session_second_factor_ok(result[0]):
            raise exceptions.AuthenticationFailed("Sign in again with your authentication code.")
        return result


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "surveillance.api.auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A per-integration token, issued on the admin's API tokens page or by "
            "`manage.py create_api_token --centre CODE`.",
        }


class VerifiedSessionScheme(SessionScheme):
    """The schema calls the verified staff session what it is: the session cookie."""

    target_class = "surveillance.api.auth.VerifiedSessionAuthentication"
