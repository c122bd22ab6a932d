"""The dispatcher: claim due reminders, re-check them, send a batch per channel, record every attempt.

Every channel (email over SMTP, SMS through its backend, a letter task on the worklist) goes through this one
path: the claim, the lease, the markers, the retries and the outcomes below are the same for all; a channel is a
``transport`` (``EmailTransport`` here, ``sms.SmsTransport``, ``letters.LetterTransport``) that builds and hands
over one payload. A reminder that fails for good falls back to the patient's next channel (``channels``).

A run (``dispatch_run``) first takes back claims whose worker died, then drains ``dispatch_batch()`` until it
returns 0 or the time budget is spent (the loop the webhook outbox shares, ``db.outbox_loop``), and records that
it finished (the health probe reads that).

What the rows say, so that nothing is lost and a duplicate is recognisable:

1. **Claim**: ``pending -> sending`` with a lease, ``attempts + 1``, in one committed conditional UPDATE checked
   by row count (the candidates are read with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two dispatchers never
   take the same row.
2. **Hand-off marker**: before a group of rows (``REMINDER_COMMIT_EVERY``) is handed to the server, a
   ``Delivery`` with outcome ``sending`` is committed for each, durably: one wait for the disk per group.
3. **Outcome**: what the server answered is recorded before the next message is handed over. An accepted message
   turns its row ``sent`` and its marker ``sent`` together (``sent_marks``); on PostgreSQL that is one prepared
   statement committed without waiting for the disk, whose answer is read just before the next message's data
   goes (after the server's 354): the database's round trip runs alongside the next envelope. A worker killed
   mid-group thus leaves at most one message the server may have accepted without its outcome recorded: the one
   in flight (a mark already sent is in the database server's hands, and committed whatever becomes of the
   worker). A crash of the database itself may lose such an unwaited commit: that message is re-sent as in 4.,
   flagged. A refusal (``retry``, ``failed``) is rare and commits as usual.
4. **Lease recovery**: a row still ``sending`` after its lease expired goes back to ``pending`` (attempts kept).
   Without a marker, the worker died before handing it over: a ``reclaimed`` delivery is written and the re-send
   is an ordinary one. With a marker still ``sending``, the server may have accepted it: the marker becomes
   ``reclaimed`` with ``possible_duplicate`` set, and so is the re-send's delivery (the group's messages not yet
   handed over are flagged so too: never doubled, but nothing durable tells them from the one in flight). The
   re-send carries the same Message-ID (it is derived from the idempotency key), so the duplicate is
   recognisable by the recipient too. A marker that says ``sent`` goes with a row that says so (3.): it is
   neither reclaimed nor re-sent.

Temporary SMTP answers (4xx) retry with exponential backoff; permanent ones (5xx) and exhausted retries end
``failed``, with the code, visible to the care team in the admin and the weekly digest. A mail server that
cannot be reached at all costs no attempt: the batch goes back to pending and the run stops (``/health/`` turns
503 while reminders wait). At send time each reminder is re-checked and skipped, with a reason, if it no longer
applies. Logs carry ids only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import re
import secrets
import smtplib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef
from django.utils import timezone, translation

from surveillance.db.outbox_loop import outbox_batches, worker_id
from surveillance.db.prepared import prepared_cursor
from surveillance.models import ContactAttempt, Delivery, Reminder, ReminderStatus, VisitStatus
from surveillance.models.patients import CLOSED_STATUSES, ContactMethod, LadderStage
from surveillance.models.reminders import Audience, Channel, DeliveryOutcome, DispatcherRun, Purpose
from surveillance.reminders import channels, letters, messages, sms, smtp_envelope
from surveillance.reminders.sent_marks import SentMarks
from surveillance.reminders.transport import SendError, Transport, TransportError, Unsendable

logger = logging.getLogger("surveillance.reminders.dispatch")

#: Time kept in hand before a lease runs out: a row is not started unless it can finish inside its lease.
LEASE_MARGIN_SECONDS = 5
#: Retry delays double from REMINDER_RETRY_SECONDS up to this.
MAX_RETRY_DELAY = dt.timedelta(hours=1)
#: How a reminder given back because the mail server could not be reached says so (the health probe looks for it).
MAIL_UNREACHABLE = "mail server unreachable"
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")
#: How an accepted reminder is logged as a contact attempt for a patient on the ladder (a letter task is logged
#: when the coordinator marks it done).
CONTACT_METHODS = {Channel.EMAIL: ContactMethod.EMAIL, Channel.SMS: ContactMethod.SMS}


def _cfg(name: str):
    return settings.CARTWATCH[name]


@dataclass
class DispatchResult:
    handled: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    released: int = 0
    reclaimed: int = 0

    def add(self, other: DispatchResult) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        return asdict(self)


def smtp_send_error(exc: Exception, *, in_transaction: bool) -> SendError:
    """What an SMTP exception says: the reply code and text (addresses removed), and whether to retry."""
    code: int | None = None
    text: bytes | str = ""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
    elif isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, exc.smtp_error
    if code is None:
        # no answer: a dropped connection or a timeout, perhaps after the server took the message
        return SendError(None, type(exc).__name__, True, maybe_accepted=in_transaction)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # SMTP answers often quote the recipient's address: never store or log it.
    text = _ADDRESS.sub("<address>", f"{code} {text}")[:500]
    return SendError(code, text, 400 <= code < 500)


# --- recovery ---------------------------------------------------------------------------------------------------
def reminder_reclaim_expired(now: dt.datetime | None = None) -> int:
    """Put rows whose worker died (lease expired while ``sending``) back to pending; returns how many."""
    now = now or timezone.now()
    reclaimed = 0
    stuck = Reminder.objects.filter(status=ReminderStatus.SENDING, lease_expires_at__lt=now).values_list(
        "pk", "attempts", "claimed_by", "lease_expires_at"
    )
    for pk, attempt, claimed_by, lease in list(stuck[:1000]):
        with transaction.atomic():
            won = Reminder.objects.filter(pk=pk, status=ReminderStatus.SENDING, lease_expires_at=lease).update(
                status=ReminderStatus.PENDING,
                lease_expires_at=None,
                claimed_by="",
                next_attempt_at=now,
                last_error="worker lost; reclaimed after its lease",
                updated_at=now,
            )
            if not won:
                continue
            reclaimed += 1
            handed_over = Delivery.objects.filter(reminder_id=pk, attempt=attempt, outcome=DeliveryOutcome.SENDING)
            if handed_over.update(
                outcome=DeliveryOutcome.RECLAIMED,
                possible_duplicate=True,
                error="worker lost after handing the message to the mail server; it may have been delivered",
            ):
                logger.warning("reminder=%s attempt=%s reclaimed after hand-off: possible duplicate", pk, attempt)
            else:
                Delivery.objects.create(
                    reminder_id=pk,
                    attempt=attempt,
                    outcome=DeliveryOutcome.RECLAIMED,
                    worker=claimed_by[:64],
                    error="worker lost before handing the message to the mail server",
                )
                logger.info("reminder=%s attempt=%s reclaimed before hand-off", pk, attempt)
    return reclaimed


# --- claiming ---------------------------------------------------------------------------------------------------
def reminder_claim_due(now: dt.datetime, limit: int, token: str) -> list[int]:
    """Claim up to ``limit`` due pending rows for ``token``; returns the ids this caller won.

    The UPDATE is conditional on ``status = pending``, so a row another dispatcher took in the meantime is simply
    not counted; on PostgreSQL ``SKIP LOCKED`` also keeps concurrent dispatchers from waiting on each other.
    """
    lease = now + dt.timedelta(seconds=_cfg("REMINDER_LEASE_SECONDS"))
    with transaction.atomic():
        due = Reminder.objects.due(now).order_by("next_attempt_at")
        if db_connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        claimed = Reminder.objects.filter(pk__in=ids).claim(token, lease, now)
    if claimed == len(ids):  # each id updated at most once: all of them won, no need to ask which
        return ids
    won = Reminder.objects.filter(pk__in=ids, claimed_by=token, status=ReminderStatus.SENDING)
    return list(won.values_list("pk", flat=True))


# --- the re-check -----------------------------------------------------------------------------------------------
def reminder_skip_reason(reminder: Reminder, now: dt.datetime) -> str:
    """Why the reminder must not go out now ("" if it still applies). Never contains patient data.

    A reason in ``channels.CHANNEL_REFUSALS`` (the reminder's channel no longer reaches the patient) sends the
    reminder to the patient's next channel; any other ends it.
    """
    visit = reminder.visit
    patient = visit.infusion.patient
    if patient.status in CLOSED_STATUSES:
        return f"patient {patient.status}"
    expected = {
        Purpose.MISSED: VisitStatus.MISSED,
        Purpose.CANCELLED: VisitStatus.CANCELLED,
    }.get(reminder.purpose, VisitStatus.SCHEDULED)
    if visit.status != expected:
        return f"visit {visit.status}"
    if reminder.sequence != visit.sequence:
        return "visit moved"
    if reminder.audience == Audience.PATIENT:
        if patient.reminders_opted_out_at is not None:
            return "patient opted out of routine reminders"
        refusal = channels.channel_refusal(patient, reminder.channel)
        if refusal:
            return refusal
    elif not patient.centre.care_team_email:
        return "centre has no care-team address"
    if reminder.is_stale(now):
        return "stale: the visit has passed"
    return ""


# --- one batch --------------------------------------------------------------------------------------------------
def dispatch_batch(now: dt.datetime | None = None, *, batch_size: int | None = None, worker: str | None = None):
    """Claim one batch of due reminders and deal with each; returns the ``DispatchResult`` (0 handled: no more).

    The claim spans every channel; after the re-check, each channel's rows go through its transport in turn.
    ``now`` is the dispatcher's clock (tests pass one to step through time); without it the real clock is used.
    """
    clock = (lambda: now) if now is not None else timezone.now
    started = clock()
    token = f"{worker or worker_id()}:{secrets.token_hex(4)}"[:64]
    ids = reminder_claim_due(started, batch_size or _cfg("REMINDER_BATCH_SIZE"), token)
    result = DispatchResult(handled=len(ids))
    if not ids:
        return result
    reminders = list(
        Reminder.objects.filter(pk__in=ids)
        .select_related("visit__infusion__patient", "prepared")
        .only(*messages.MESSAGE_FIELDS, "prepared")
        # a re-send after a possible double is flagged too (read here rather than by a query of its own)
        .annotate(doubtful=Exists(Delivery.objects.filter(reminder=OuterRef("pk"), possible_duplicate=True)))
        .order_by("next_attempt_at", "pk")
    )
    messages.centres_attach(reminders)
    by_channel: dict[str, list[Reminder]] = {}
    for reminder in reminders:
        reason = reminder_skip_reason(reminder, started)
        if reason:
            _record_skipped(reminder, token, reason, started)
            result.skipped += 1
        else:
            by_channel.setdefault(reminder.channel, []).append(reminder)
    # A channel whose server cannot be reached gives its rows back; the other channels still send theirs.
    reached = [
        _send_channel(transport_for(channel), rows, token, clock, result) for channel, rows in by_channel.items()
    ]
    if not all(reached):
        result.handled = 0  # stop the run: what was given back cannot go out until the server answers
    return result


def transport_for(channel: str) -> Transport:
    """The sender of a channel, fresh for one batch."""
    if channel == Channel.SMS:
        return sms.SmsTransport()
    if channel == Channel.LETTER:
        return letters.LetterTransport()
    return EmailTransport()


def _send_channel(transport: Transport, to_send: list[Reminder], token: str, clock, result: DispatchResult) -> bool:
    """Send one channel's rows of the batch; False when its transport could not be reached (the rows wait)."""
    deadline = time.monotonic() + _cfg("REMINDER_LEASE_SECONDS") - transport.timeout - LEASE_MARGIN_SECONDS
    try:
        transport.open()
    except (smtplib.SMTPException, OSError) as exc:
        logger.warning("%s (%s): %s reminders back to pending", transport.unreachable, type(exc).__name__, len(to_send))
        result.released += _release(to_send, token, clock(), f"{transport.unreachable}: {type(exc).__name__}")
        return False
    try:
        return _send_all(_build(to_send, token, clock, transport, result), token, clock, transport, deadline, result)
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            transport.close()


class EmailTransport:
    """The email channel: one SMTP session per batch, each message handed over as the bytes rendered for it.

    A rendering made ahead (``PreparedMessage``) is used while its fingerprint still matches; otherwise the
    message is rendered now. Over SMTP the bytes go straight into the open session; other backends (console,
    file, memory) get them through Django's backend interface.
    """

    unreachable = MAIL_UNREACHABLE
    lost = "mail server connection lost"
    accepted_code = 250

    def __init__(self) -> None:
        self.connection = get_connection(fail_silently=False)
        self.timeout = settings.EMAIL_TIMEOUT

    def open(self) -> None:
        """Open the mail session, greeting included, before any message is marked as handed over."""
        self.connection.open()
        smtp = getattr(self.connection, "connection", None)
        if isinstance(smtp, smtplib.SMTP):
            smtp.ehlo_or_helo_if_needed()

    def build(self, reminder: Reminder, now: dt.datetime) -> messages.RenderedEmail:
        try:
            envelope = messages.reminder_envelope(reminder)
        except ValueError as exc:
            # Django cannot encode the address; its message quotes the address, so only the type is kept.
            raise Unsendable(f"invalid address: {type(exc).__name__}") from None
        prepared = getattr(reminder, "prepared", None)
        if prepared is not None and prepared.fingerprint == messages.reminder_fingerprint(reminder):
            raw = bytes(prepared.raw)
        else:
            raw = messages.reminder_bytes(reminder, now=now)
        return messages.RenderedEmail(raw, envelope, connection=self.connection)

    def ready(self) -> bool:
        """Whether the mail session is open, reopening it if an error closed it."""
        if getattr(self.connection, "connection", True) is not None:
            return True
        try:
            self.open()
        except (smtplib.SMTPException, OSError):
            return False
        return True

    def send(self, reminder: Reminder, payload: messages.RenderedEmail, settle: Callable[[], None]) -> str:
        smtp = getattr(self.connection, "connection", None)
        try:
            if isinstance(smtp, smtplib.SMTP):
                smtp_envelope.envelope_send(smtp, *payload.envelope, payload.raw, before_data=settle)
            else:
                settle()
                self.connection.send_messages([payload])
        except (smtplib.SMTPException, OSError) as exc:
            error = smtp_send_error(exc, in_transaction=True)
            if error.code in (None, 421):
                self.close()
            raise TransportError(error) from None
        return reminder.message_id  # what an email provider's tracking events name the message by

    def close(self) -> None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.connection.close()


def _build(to_send: list[Reminder], token: str, clock, transport: Transport, result: DispatchResult) -> list[tuple]:
    """Every payload of the batch, before the first is handed over: nothing slow then stands between the
    server's answer and the commit that records it."""
    ready = []
    for reminder in to_send:
        reminder.message_id = messages.message_id_for(reminder.idempotency_key)
        try:
            payload = transport.build(reminder, clock())
        except Unsendable as exc:
            _record_unsendable(reminder, token, str(exc), clock(), result)
            continue
        except Exception as exc:  # a message that cannot be built must not come back every lease
            logger.exception("reminder=%s cannot be rendered", reminder.pk)
            _record_unsendable(reminder, token, f"cannot be rendered: {type(exc).__name__}", clock(), result)
            continue
        ready.append((reminder, payload))
    return ready


def _record_unsendable(reminder: Reminder, token: str, text: str, now: dt.datetime, result: DispatchResult) -> None:
    """A reminder whose message cannot be made fails for good (it would fail again every lease)."""
    with transaction.atomic():
        _record_error(reminder, None, token, SendError(None, text, temporary=False), now)
    result.failed += 1


def _send_all(ready: list[tuple], token: str, clock, transport: Transport, deadline: float, result) -> bool:
    """Send the batch in groups of ``REMINDER_COMMIT_EVERY`` messages; False when the connection was lost and the
    rest given back.

    A group's hand-off markers are committed together, durably, before its first message goes out: one wait for
    the disk per group. Each message's outcome is then recorded as soon as the server answers, before the next
    message is handed over (``_record_sent``, ``_record_error``). A worker killed mid-group thus leaves the
    message in flight with its marker (re-sent flagged: it may have been delivered) and the group's messages not
    yet handed over with theirs (re-sent flagged too, but never doubled); the ones the server accepted are sent.
    """
    doubtful = {reminder.pk for reminder, _ in ready if reminder.doubtful}
    size = max(1, _cfg("REMINDER_COMMIT_EVERY"))
    marks = SentMarks()
    try:
        for start in range(0, len(ready), size):
            group = ready[start : start + size]
            marks.settle()
            if time.monotonic() > deadline:
                result.released += _release([r for r, _ in ready[start:]], token, clock(), "lease running out")
                return True
            with transaction.atomic():
                markers = _hand_over([r for r, _ in group], token, doubtful)
            for n, ((reminder, payload), marker) in enumerate(zip(group, markers, strict=True)):
                if not transport.ready():
                    marks.settle()
                    unsent = [r for r, _ in ready[start + n :]]
                    result.released += _release(unsent, token, clock(), transport.lost, markers=markers[n:])
                    return False
                field = _send_one(reminder, payload, marker, token, clock, transport, marks)
                setattr(result, field, getattr(result, field) + 1)
    finally:
        marks.settle()
    return True


def _hand_over(reminders: list[Reminder], token: str, doubtful: set[int]) -> list[Delivery]:
    """The hand-off markers of a group: committed before its first message reaches the server.

    On PostgreSQL one prepared statement inserts the group from arrays (``bulk_create`` compiled the same INSERT
    anew for every group, about a tenth of a millisecond a message)."""
    at = timezone.now()
    markers = [
        Delivery(
            reminder=reminder,
            attempt=reminder.attempts,
            at=at,
            outcome=DeliveryOutcome.SENDING,
            worker=token,
            message_id=reminder.message_id,
            possible_duplicate=reminder.pk in doubtful,
        )
        for reminder in reminders
    ]
    if db_connection.vendor != "postgresql":
        return Delivery.objects.bulk_create(markers)
    params = {
        "at": at,
        "sending": DeliveryOutcome.SENDING.value,
        "token": token,
        "reminders": [marker.reminder_id for marker in markers],
        "attempts": [marker.attempt for marker in markers],
        "message_ids": [marker.message_id for marker in markers],
        "doubtful": [marker.possible_duplicate for marker in markers],
    }
    with prepared_cursor(_hand_over_sql(), params) as cursor:
        ids = dict(cursor.fetchall())
    for marker in markers:
        marker.pk = ids[marker.reminder_id]
        marker._state.adding = False
    return markers


@functools.cache
def _hand_over_sql() -> str:
    """The markers' INSERT on PostgreSQL: one row per element of the arrays, each returned with its reminder."""
    return (
        f"INSERT INTO {db_connection.ops.quote_name(Delivery._meta.db_table)} "
        "(reminder_id, attempt, at, outcome, smtp_code, error, worker, message_id, possible_duplicate) "
        "SELECT reminder, attempt, %(at)s, %(sending)s, NULL, '', %(token)s, message_id, doubtful "
        "FROM unnest(%(reminders)s::bigint[], %(attempts)s::integer[], %(message_ids)s::text[], "
        "%(doubtful)s::boolean[]) AS markers (reminder, attempt, message_id, doubtful) "
        "RETURNING reminder_id, id"
    )


def _send_one(
    reminder: Reminder, payload, marker: Delivery, token: str, clock, transport: Transport, marks: SentMarks
) -> str:
    """Hand one payload over and record what the server said before anything else is handed over; returns the
    result field. The earlier message's mark is settled by the transport, just before this hand-over."""
    try:
        reminder.provider_message_id = transport.send(reminder, payload, marks.settle)[:64]
    except TransportError as exc:
        marks.settle()
        return _record_error(reminder, marker, token, exc.error, clock())
    _record_sent(reminder, marker, token, clock(), transport.accepted_code, marks)
    return "sent"


def _record_sent(
    reminder: Reminder, marker: Delivery, token: str, now: dt.datetime, code: int | None, marks: SentMarks
) -> None:
    """Record an accepted message: the row ``sent`` and its marker too (``sent_marks``), and the contact attempt
    of a patient on the lost-to-follow-up ladder (rare: only then is there a transaction of several statements,
    answered at once)."""
    patient = reminder.visit.infusion.patient
    method = CONTACT_METHODS.get(reminder.channel)
    on_ladder = (
        method is not None and reminder.audience == Audience.PATIENT and patient.ladder_stage != LadderStage.ON_TRACK
    )
    if not on_ladder:
        logged = functools.partial(_log_sent, reminder, marker, token, now, code)
        marks.mark(reminder, marker, token, now, code, then=logged)
        return
    marks.settle()
    with transaction.atomic():
        won = marks.mark_now(reminder, marker, token, now, code)
        if won:
            with translation.override("en"):  # stored, as the service's other words are, in English
                note = (
                    f"Automatic {reminder.get_purpose_display().lower()} {reminder.get_channel_display()} "
                    f"(reminder {reminder.pk})"
                )
            ContactAttempt.objects.create(patient=patient, attempted_at=now, method=method, note=note)
    _log_sent(reminder, marker, token, now, code, won)


def _log_sent(reminder: Reminder, marker: Delivery, token: str, now: dt.datetime, code: int | None, won: bool) -> None:
    logger.info(
        "reminder=%s attempt=%s channel=%s outcome=sent code=%s delay_s=%d duplicate=%s worker=%s",
        reminder.pk,
        reminder.attempts,
        reminder.channel,
        code,
        (now - reminder.send_after).total_seconds(),
        marker.possible_duplicate,
        token,
    )
    if not won:
        logger.warning("reminder=%s was reclaimed while being sent: another worker may send it again", reminder.pk)


def _error_field(reminder: Reminder, error: SendError) -> str:
    exhausted = reminder.attempts >= _cfg("REMINDER_MAX_ATTEMPTS")
    return "retried" if error.temporary and not exhausted else "failed"


def _record_error(reminder: Reminder, marker: Delivery | None, token: str, error: SendError, now: dt.datetime) -> str:
    field = _error_field(reminder, error)
    if field == "retried":
        delay = min(
            dt.timedelta(seconds=_cfg("REMINDER_RETRY_SECONDS") * 2 ** max(reminder.attempts - 1, 0)), MAX_RETRY_DELAY
        )
        status, outcome, next_attempt = ReminderStatus.PENDING, DeliveryOutcome.RETRY, now + delay
    else:
        status, outcome, next_attempt = ReminderStatus.FAILED, DeliveryOutcome.FAILED, reminder.next_attempt_at
    text = f"{error.text} (retries exhausted)" if error.temporary and field == "failed" else error.text
    with transaction.atomic():
        won = Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENDING, claimed_by=token).update(
            status=status,
            next_attempt_at=next_attempt,
            last_error=text[:500],
            last_smtp_code=error.code,
            lease_expires_at=None,
            claimed_by="",
            updated_at=now,
        )
        if won and status == ReminderStatus.FAILED:
            channels.fallback_create(reminder, now)
        values = {"outcome": outcome, "smtp_code": error.code, "error": text[:500]}
        if marker is None:
            Delivery.objects.create(reminder=reminder, attempt=reminder.attempts, worker=token, **values)
        else:
            Delivery.objects.filter(pk=marker.pk, outcome=DeliveryOutcome.SENDING).update(
                possible_duplicate=marker.possible_duplicate or error.maybe_accepted, **values
            )
    logger.log(
        logging.WARNING if field == "failed" else logging.INFO,
        "reminder=%s attempt=%s channel=%s outcome=%s code=%s worker=%s",
        reminder.pk,
        reminder.attempts,
        reminder.channel,
        outcome,
        error.code,
        token,
    )
    return field


def _record_skipped(reminder: Reminder, token: str, reason: str, now: dt.datetime) -> None:
    with transaction.atomic():
        won = Reminder.objects.filter(pk=reminder.pk, status=ReminderStatus.SENDING, claimed_by=token).update(
            status=ReminderStatus.SKIPPED,
            outcome_reason=reason[:255],
            lease_expires_at=None,
            claimed_by="",
            updated_at=now,
        )
        if won:
            Delivery.objects.create(
                reminder=reminder,
                attempt=reminder.attempts,
                outcome=DeliveryOutcome.SKIPPED,
                worker=token,
                error=reason[:500],
            )
            if reason in channels.CHANNEL_REFUSALS:
                channels.fallback_create(reminder, now)
    logger.info("reminder=%s outcome=skipped reason=%r worker=%s", reminder.pk, reason, token)


def _release(
    reminders: list[Reminder], token: str, now: dt.datetime, reason: str, markers: Sequence[Delivery] = ()
) -> int:
    """Give claimed rows back untouched: the attempt is not counted and they are due again at once.

    ``markers``: hand-off markers of rows that never reached the server after all; they go with the attempt.
    """
    with transaction.atomic():
        Delivery.objects.filter(pk__in=[m.pk for m in markers], outcome=DeliveryOutcome.SENDING).delete()
        return Reminder.objects.filter(
            pk__in=[r.pk for r in reminders], status=ReminderStatus.SENDING, claimed_by=token
        ).update(
            status=ReminderStatus.PENDING,
            attempts=F("attempts") - 1,
            lease_expires_at=None,
            claimed_by="",
            next_attempt_at=now,
            last_error=reason[:500],
            updated_at=now,
        )


# --- a run ------------------------------------------------------------------------------------------------------
def dispatch_run(
    now: dt.datetime | None = None, *, budget_seconds: float | None = None, batch_size: int | None = None
) -> DispatchResult:
    """Reclaim dead workers' rows, then send batches until none is due or the time budget is spent."""
    worker = worker_id()
    budget = _cfg("DISPATCH_BUDGET_SECONDS") if budget_seconds is None else budget_seconds
    total = DispatchResult(reclaimed=reminder_reclaim_expired(now))
    for result in outbox_batches(
        lambda: dispatch_batch(now, batch_size=batch_size, worker=worker),
        handled=lambda result: result.handled,
        budget_seconds=budget,
    ):
        total.add(result)
    dispatcher_run_record(worker, total, now)
    return total


def helpers_wanted(now: dt.datetime | None = None) -> int:
    """How many more dispatchers should join this run: one per further batch already due, up to
    ``DISPATCH_PARALLEL - 1``. At the reminder hour a whole time zone falls due at once; with several SMTP
    sessions in parallel it goes out in a fraction of the time. Their claims never overlap (compare-and-set)."""
    extra = _cfg("DISPATCH_PARALLEL") - 1
    if extra < 1:
        return 0
    batch = _cfg("REMINDER_BATCH_SIZE")
    now = now or timezone.now()
    due = Reminder.objects.due(now)[: batch * extra + 1].count()
    return min(extra, max(due - 1, 0) // batch)


def dispatcher_run_record(worker: str, result: DispatchResult, now: dt.datetime | None = None) -> None:
    """Say that a dispatcher finished a run (the health probe's heartbeat); forget workers silent for a day."""
    now = now or timezone.now()
    DispatcherRun.objects.update_or_create(
        worker=worker[:64], defaults={"finished_at": now, "handled": result.handled, "sent": result.sent}
    )
    DispatcherRun.objects.filter(finished_at__lt=now - dt.timedelta(days=1)).delete()


# --- health -----------------------------------------------------------------------------------------------------
#: The counts ``/health/`` gives for each channel.
OPEN = (ReminderStatus.PENDING, ReminderStatus.SENDING)
CHANNEL_STATES = tuple(
    s.value for s in (*OPEN, ReminderStatus.SENT, ReminderStatus.FAILED, ReminderStatus.BOUNCED, ReminderStatus.SKIPPED)
)


def reminders_health(now: dt.datetime | None = None, *, started: dt.datetime | None = None) -> tuple[bool, dict]:
    """Counts for the health probe (no patient data) and whether the dispatcher is keeping up.

    Monitoring polls it every few seconds at any cohort size, so every query is bounded: the open rows are counted
    through their partial indexes up to ``HEALTH_COUNT_LIMIT``, and the outcomes (sent, failed, bounced, skipped)
    among the newest that many reminders; ``channels`` gives the same counts for each channel. ``started`` is when
    the asking process started: until a first dispatcher run is recorded, the dispatcher counts as stalled only
    once the stall time has passed since then (a fresh deployment is not an alarm).
    """
    now = now or timezone.now()
    limit = _cfg("HEALTH_COUNT_LIMIT")
    newest = Reminder.objects.order_by("-pk").values("pk")[:limit]
    by_channel: dict[str, dict[str, int]] = {
        channel: {state: 0 for state in CHANNEL_STATES} for channel in Channel.values
    }
    for status, channel, n in (
        Reminder.objects.filter(pk__in=newest)
        .exclude(status__in=(ReminderStatus.PENDING, ReminderStatus.SENDING))
        .values_list("status", "channel")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        if status in CHANNEL_STATES:
            by_channel[channel][status] += n
    for status, channel, n in (
        Reminder.objects.filter(pk__in=Reminder.objects.filter(status__in=OPEN).values("pk")[:limit])
        .values_list("status", "channel")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        by_channel[channel][status] += n
    outcomes = {state: sum(counts[state] for counts in by_channel.values()) for state in CHANNEL_STATES}
    oldest_due = Reminder.objects.due(now).aggregate(at=Min("next_attempt_at"))["at"]
    late_cutoff = now - dt.timedelta(seconds=_cfg("HEALTH_REMINDER_LATE_SECONDS"))
    late = (
        Reminder.objects.due(late_cutoff)[:limit].count()
        + Reminder.objects.filter(status=ReminderStatus.SENDING, send_after__lt=late_cutoff)[:limit].count()
    )
    unreachable_cutoff = now - dt.timedelta(seconds=_cfg("HEALTH_MAIL_UNREACHABLE_SECONDS"))
    relay_unreachable = (
        Reminder.objects.due(now)
        .filter(last_error__startswith=MAIL_UNREACHABLE, send_after__lt=unreachable_cutoff)
        .exists()
    )
    last_run = DispatcherRun.objects.aggregate(at=Max("finished_at"))["at"]
    run_age = (now - last_run).total_seconds() if last_run else None
    quiet_since = last_run or started
    stalled = quiet_since is None or (now - quiet_since).total_seconds() > _cfg("HEALTH_DISPATCHER_STALL_SECONDS")
    payload = {
        "status": "ok",
        "pending": Reminder.objects.filter(status=ReminderStatus.PENDING)[:limit].count(),
        "oldest_pending_age_s": round((now - oldest_due).total_seconds()) if oldest_due else 0,
        "sending": Reminder.objects.filter(status=ReminderStatus.SENDING)[:limit].count(),
        "sent": outcomes.get(ReminderStatus.SENT, 0),
        "failed": outcomes.get(ReminderStatus.FAILED, 0),
        "skipped": outcomes.get(ReminderStatus.SKIPPED, 0),
        "bounced": outcomes.get(ReminderStatus.BOUNCED, 0),
        "channels": by_channel,
        "late": late,
        "counted_up_to": limit,
        "last_dispatch_at": last_run.isoformat() if last_run else None,
        "last_dispatch_age_s": round(run_age) if run_age is not None else None,
    }
    problems = []
    if stalled:
        problems.append("dispatcher stalled")
    if relay_unreachable:
        problems.append("mail relay unreachable")
    if late:
        problems.append("reminders late")
    if problems:
        payload["status"] = ", ".join(problems)
    return not problems, payload
