"""Who viewed or changed a patient's data, when and from where; and the throttle on failed staff logins.

Every audit entry is built by ``audit_entry_build`` (who acted, in the one vocabulary ``AuditActor``; what; to
which patient; from where) and stored by ``audit_write``, by ``audit_entries_insert`` for rows written in bulk, or
by ``audit_insert`` for the per-request row of the API.

The admin records its own views and changes (``surveillance.admin.base``) with the patient ids they showed;
``AuditMiddleware`` records every authenticated API request (a view may name the patient it served by setting
``request.audit_patient_id``). Failed logins are audit rows too (action ``login_failed``): the throttle counts
them in the database, so it holds across every web worker and survives a restart, and auditors see them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import connections, router
from django.dispatch import receiver
from django.utils import timezone

from surveillance import api
from surveillance.db import bulk_rows
from surveillance.db.prepared import counted_prepared_cursor
from surveillance.models import AuditEntry
from surveillance.models import audit as audit_models
from surveillance.models.audit import AuditActor

LOGIN_FAILED = "login_failed"


def request_remote_addr(request) -> str | None:
    """The client's address: the peer of the socket or, behind ``TRUSTED_PROXIES`` reverse proxies, the
    X-Forwarded-For entry the outermost of them wrote. Entries further left were written by the client and prove
    nothing; an entry that is not an address is ignored rather than stored."""
    if request is None:
        return None
    hops = settings.TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if hops and forwarded:
        candidate = forwarded[-min(hops, len(forwarded))]
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(candidate))
    return request.META.get("REMOTE_ADDR") or None


def audit_actor_label(actor: AuditActor, name: str = "") -> str:
    """The label an entry carries for an actor that is not a user row: the kind, and its name if it has one."""
    return (f"{actor.value}:{name}" if name else actor.value)[:128]


def audit_entry_build(
    action: str,
    *,
    object_type: str,
    object_id: object = "",
    patient_id: int | None = None,
    changes: dict | None = None,
    by=None,
    actor: AuditActor = AuditActor.SYSTEM,
    actor_name: str = "",
    remote_addr: str | None = None,
) -> AuditEntry:
    """An audit entry, unsaved: the one place an entry's fields are decided.

    ``by`` is the user who acted; without one, ``actor`` says who did (a system task unless told otherwise), and
    an actor named for the surrounding request or import (``audit_acting_as``) takes its place. The client
    address is the request's unless given.
    """
    entry = AuditEntry(
        actor=by,
        actor_label="" if by is not None else audit_actor_label(actor, actor_name),
        action=action[:32],
        object_type=object_type[:64],
        object_id=str(object_id)[:64],
        patient_id=patient_id,
        changes=changes or {},
        remote_addr=remote_addr,
    )
    entry.request_context_fill()
    return entry


def audit_write(action: str, **fields) -> AuditEntry:
    """Store one audit entry (``audit_entry_build``'s fields), in the caller's transaction."""
    entry = audit_entry_build(action, **fields)
    entry.save()
    return entry


#: The columns of an entry written as a row (``audit_entries_insert``, ``audit_insert``); ``at`` is stamped.
AUDIT_ROW_COLUMNS = (
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "changes",
    "remote_addr",
)


def audit_entries_insert(entries: Iterable[AuditEntry]) -> None:
    """Store many built entries at once (``bulk_rows``: COPY on PostgreSQL), for flows that write in bulk."""
    rows = [tuple(getattr(entry, column) for column in AUDIT_ROW_COLUMNS) for entry in entries]
    bulk_rows.rows_insert(AuditEntry, AUDIT_ROW_COLUMNS, rows)


@contextlib.contextmanager
def audit_acting_as(actor: AuditActor, name: str = "") -> Iterator[None]:
    """Entries written with no user inside the block name this actor (a decorator too).

    An actor already named outside keeps its place: an import run through the API is the API token's doing.
    """
    if audit_models.request_actor_label.get():
        yield
        return
    token = audit_models.request_actor_label.set(audit_actor_label(actor, name))
    try:
        yield
    finally:
        audit_models.request_actor_label.reset(token)


def _request_actor(request, default: AuditActor) -> dict:
    """Who made the request, as ``audit_entry_build`` takes it: a user row, an API token, or ``default``."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"actor": default}
    if getattr(user, "pk", None) is not None:
        return {"by": user}
    # An API token authenticates as a principal that is not a user row: it is named by its token instead.
    return {"actor": AuditActor.API_TOKEN, "actor_name": user.token.name}


def audit_record(
    request,
    action: str,
    *,
    object_type: str,
    object_id="",
    patient_id: int | None = None,
    changes: dict | None = None,
    actor: AuditActor = AuditActor.ANONYMOUS,
) -> AuditEntry:
    """One audit row for something done through a request: who, what, when, from where.

    ``actor`` names who acted when no one signed in (a patient following a signed link, say)."""
    return audit_write(
        action,
        object_type=object_type,
        object_id=object_id,
        patient_id=patient_id,
        changes=changes,
        remote_addr=request_remote_addr(request),
        **_request_actor(request, actor),
    )


def audit_patients_viewed(request, object_type: str, patient_ids, *, action: str = "list") -> AuditEntry | None:
    """A list page showed these patients: one row naming all of them (a page of a list is one view)."""
    ids = sorted({pid for pid in patient_ids if pid is not None})
    if not ids:
        return None
    return audit_record(
        request,
        action,
        object_type=object_type,
        patient_id=ids[0] if len(ids) == 1 else None,
        changes={"patient_ids": ids, "query": request.GET.urlencode()[:500]},
    )


class AuditMiddleware:
    """Records every authenticated request to the REST API (reads included): who, what, when, from where.

    It also makes the client address known to audit rows written anywhere while the request is served.
    """

    UNAUDITED = (f"{api.PREFIX}schema", f"{api.PREFIX}docs")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = audit_models.request_remote_addr.set(request_remote_addr(request))
        try:
            response = self.get_response(request)
        finally:
            audit_models.request_remote_addr.reset(token)
        path = request.path
        if path.startswith(api.PREFIX) and not path.startswith(self.UNAUDITED):
            user = getattr(request, "user", None)
            if user is not None and user.is_authenticated:
                audit_insert(
                    audit_entry_build(
                        f"api_{request.method.lower()}",
                        object_type="api",
                        object_id=path,
                        patient_id=getattr(request, "audit_patient_id", None),
                        changes=_api_changes(request, response, path),
                        remote_addr=request_remote_addr(request),
                        **_request_actor(request, AuditActor.ANONYMOUS),
                    )
                )
        return response


def audit_insert(entry: AuditEntry) -> None:
    """Append one built entry with a single INSERT.

    Every API request writes one, reads included, so this runs on every request; ``AuditEntry.save`` would add
    its signals and guards for a row that is always new. On PostgreSQL the INSERT is prepared once per connection
    (``counted_prepared_cursor``): parsed and planned for each request, with its parameters written into its text
    by the client, it cost both processes more than the row. What keeps the trail append-only is untouched: the
    queryset refuses bulk changes and, on PostgreSQL, a trigger refuses UPDATE and DELETE.
    """
    connection = connections[router.db_for_write(AuditEntry)]
    sql, fields = _audit_insert_statement(connection.alias)
    values = (timezone.now(), *(getattr(entry, column) for column in AUDIT_ROW_COLUMNS))
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    if connection.vendor == "postgresql":
        with counted_prepared_cursor(connection) as cursor:
            cursor.execute(sql, params)
        return
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.cache
def _audit_insert_statement(alias: str) -> tuple[str, list]:
    """The INSERT of an audit row on this database, and its fields in the order of its values (``at``, then
    ``AUDIT_ROW_COLUMNS``)."""
    meta = AuditEntry._meta
    fields = [meta.get_field(name) for name in ("at", *AUDIT_ROW_COLUMNS)]
    quote = connections[alias].ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(meta.db_table), ", ".join(quote(field.column) for field in fields), ", ".join(["%s"] * len(fields))
    )
    return sql, fields


def _api_changes(request, response, path: str) -> dict:
    changes = {"status": response.status_code, "path": path[:255]}
    patient_ids = getattr(request, "audit_patient_ids", None)  # a list page names the patients it showed
    if patient_ids:
        changes["patient_ids"] = sorted(set(patient_ids))
    return changes


# --- Failed-login throttle --------------------------------------------------------------------------------------


def _limits() -> tuple[int, int, dt.timedelta]:
    cfg = settings.CARTWATCH
    return (
        cfg.get("LOGIN_FAILURES_PER_USER", 5),
        cfg.get("LOGIN_FAILURES_PER_ADDRESS", 20),
        dt.timedelta(seconds=cfg.get("LOGIN_LOCKOUT_SECONDS", 15 * 60)),
    )


def login_throttled(username: str, remote_addr: str | None, now: dt.datetime | None = None) -> bool:
    """Too many recent failures for this username, or from this address: refuse even a right password.

    A successful login forgives the username's earlier failures (the rows stay: the audit is never edited).
    """
    per_user, per_address, window = _limits()
    since = (now or timezone.now()) - window
    recent = AuditEntry.objects.filter(action=LOGIN_FAILED, at__gte=since)
    if username:
        last_login = (
            AuditEntry.objects.filter(action="login", object_id=username[:64], at__gte=since)
            .order_by("-at")
            .values_list("at", flat=True)
            .first()
        )
        mine = recent.filter(object_id=username[:64])
        if last_login is not None:
            mine = mine.filter(at__gt=last_login)
        if mine.count() >= per_user:
            return True
    return bool(remote_addr) and recent.filter(remote_addr=remote_addr).count() >= per_address


@receiver(user_login_failed, dispatch_uid="cartwatch_audit_login_failed")
def _on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username") or "")
    audit_write(
        LOGIN_FAILED,
        object_type="user",
        object_id=username,
        actor=AuditActor.ANONYMOUS,
        remote_addr=request_remote_addr(request),
    )


@receiver(user_logged_in, dispatch_uid="cartwatch_audit_logged_in")
def _on_logged_in(sender, request, user, **kwargs):
    audit_record(request, "login", object_type="user", object_id=user.get_username())
