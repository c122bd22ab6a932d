"""Marking a message sent: its reminder ``sent`` and its hand-off marker too, once per message the server accepts.

The dispatcher records each accepted message before the next is handed over, so a worker lost mid-group leaves at
most the one in flight in doubt. On PostgreSQL the mark is one prepared statement in its own transaction,
committed without waiting for the disk; and it is sent without waiting for its answer either. The answer is read
(``SentMarks.settle``) at the last moment the next hand-over can still be taken back: for an email, after the mail
server's 354 to DATA and before the message itself. The database's round trip thus runs alongside the next
message's envelope commands, instead of between the server's answer and them.

What a worker lost with a mark unanswered leaves is the same as before: the statement is already in the database
server's socket, and the server runs it to its commit whatever becomes of its client (it notices a client gone
only when it next reads or writes). A crash of the database itself may lose the mark, as it may lose any commit
that did not wait for the disk: the message is then re-sent, flagged by its durable marker.

Inside a transaction (a patient on the lost-to-follow-up ladder also gets a contact attempt) the mark goes through
psycopg's cursor, answered at once: a failed statement would spoil the transaction, so nothing is sent that might
need sending again. SQLite has neither such commits nor such sends: there the two updates commit as usual.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import select
import weakref
from collections.abc import Callable

import psycopg
from django.db import connection as db_connection
from django.db import transaction
from psycopg import pq

from surveillance.db.prepared import prepared_cursor
from surveillance.models import Delivery, Reminder, ReminderStatus
from surveillance.models.reminders import DeliveryOutcome

#: The server-side name of the PostgreSQL statement (psycopg's own are ``_pg3_<n>``).
STATEMENT = b"cartwatch_mark_sent"
#: The psycopg connections the statement is prepared on (a new connection prepares it again).
_prepared_on: weakref.WeakSet = weakref.WeakSet()


@dataclasses.dataclass
class _InFlight:
    connection: psycopg.Connection
    parameters: list[bytes | None]
    then: Callable[[bool], None]


class SentMarks:
    """The marks of one batch's messages, at most one of them unanswered at any time."""

    def __init__(self) -> None:
        self.in_flight: _InFlight | None = None

    def mark(
        self,
        reminder: Reminder,
        marker: Delivery,
        token: str,
        now: dt.datetime,
        code: int | None,
        then: Callable[[bool], None],
    ) -> None:
        """Mark ``reminder`` sent (and ``marker``), for a row this dispatcher still holds; ``then(won)`` is called
        with whether it still held it (a row reclaimed meanwhile is left alone) once the database has answered."""
        self.settle()
        values = {
            "marker_sent": DeliveryOutcome.SENT.value,
            "code": code,
            "marker": marker.pk,
            "marker_sending": DeliveryOutcome.SENDING.value,
            "sent": ReminderStatus.SENT.value,
            "now": now,
            "message_id": reminder.message_id,
            "provider_id": reminder.provider_message_id,
            "reminder": reminder.pk,
            "sending": ReminderStatus.SENDING.value,
            "token": token,
        }
        if db_connection.vendor != "postgresql":
            then(_mark_now(values))
            return
        if not db_connection.get_autocommit():
            # inside a transaction (a patient on the ladder): answered at once; an error would end the
            # transaction, so nothing is sent that might need doing again
            with prepared_cursor(_statement(), values) as cursor:
                won = cursor.rowcount == 1
            then(won)
            return
        with db_connection.wrap_database_errors:
            connection = db_connection.connection
            parameters = [_text(values[name]) for name in PARAMETERS]
            _send(connection, parameters)
        self.in_flight = _InFlight(connection, parameters, then)

    def mark_now(self, reminder: Reminder, marker: Delivery, token: str, now: dt.datetime, code: int | None) -> bool:
        """``mark``, answered before it returns: whether the row was still held."""
        won: list[bool] = []
        self.mark(reminder, marker, token, now, code, then=won.append)
        self.settle()
        return won[0]

    def settle(self) -> None:
        """Wait for the unanswered mark's answer, if there is one, and pass it on; raises the database's error."""
        in_flight, self.in_flight = self.in_flight, None
        if in_flight is None:
            return
        with db_connection.wrap_database_errors:
            try:
                won = _answer(in_flight.connection.pgconn)
            except psycopg.errors.InvalidSqlStatementName:
                # the session's statements were dropped meanwhile (psycopg deallocates them all when a rollback
                # or a DROP goes by): nothing ran, and outside a transaction nothing is spoilt, so it runs again
                _prepared_on.discard(in_flight.connection)
                _send(in_flight.connection, in_flight.parameters)
                won = _answer(in_flight.connection.pgconn)
        in_flight.then(won)


def _send(connection: psycopg.Connection, parameters: list[bytes | None]) -> None:
    """Send the mark (preparing its statement first on a session that lacks it), without waiting for its answer."""
    if connection not in _prepared_on:
        connection.execute(f"PREPARE {STATEMENT.decode()} AS {_numbered()}")
        _prepared_on.add(connection)
    pgconn = connection.pgconn
    pgconn.send_query_prepared(STATEMENT, parameters)
    while pgconn.flush():  # the few bytes leave at once unless the socket is full
        select.select([], [pgconn.socket], [])


def _answer(pgconn: pq.abc.PGconn) -> bool:
    """Read the statement's results to the end (the connection is then free again); whether it updated the row."""
    results = []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    failed = next((r for r in results if r.status != pq.ExecStatus.COMMAND_OK), None)
    if failed is not None or not results:
        message = (failed.error_message if failed else b"") or pgconn.error_message or b"no answer"
        state = failed.error_field(pq.DiagnosticField.SQLSTATE) if failed else None
        try:
            error = psycopg.errors.lookup(state.decode()) if state else psycopg.OperationalError
        except KeyError:
            error = psycopg.DatabaseError
        raise error(message.decode(errors="replace").strip())
    return int(results[-1].command_tuples or 0) == 1


def _text(value) -> bytes | None:
    """A parameter in PostgreSQL's text format (the statement's columns give the types)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat().encode()
    return str(value).encode()


#: The statement's parameters, in the order PostgreSQL numbers them.
PARAMETERS = (
    "marker_sent",
    "code",
    "marker",
    "marker_sending",
    "sent",
    "now",
    "message_id",
    "provider_id",
    "reminder",
    "sending",
    "token",
)


@functools.cache
def _updates() -> tuple[str, str]:
    """The marker's update and the row's, with named parameters."""
    quote = db_connection.ops.quote_name
    handed = (
        f"UPDATE {quote(Delivery._meta.db_table)} SET outcome = %(marker_sent)s, smtp_code = %(code)s "
        f"WHERE id = %(marker)s AND outcome = %(marker_sending)s"
    )
    held = (
        f"UPDATE {quote(Reminder._meta.db_table)} SET status = %(sent)s, sent_at = %(now)s, "
        f"message_id = %(message_id)s, provider_message_id = %(provider_id)s, last_smtp_code = %(code)s, "
        f"last_error = '', lease_expires_at = NULL, claimed_by = '', updated_at = %(now)s{{source}} "
        f"WHERE id = %(reminder)s AND status = %(sending)s AND claimed_by = %(token)s"
    )
    return handed, held


@functools.cache
def _statement() -> str:
    """PostgreSQL's one statement: the marker's update as a CTE, and ``set_config`` in ``FROM`` so that it runs
    before the commit (it holds for the statement's own transaction only)."""
    handed, held = _updates()
    source = " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_wait"
    return f"WITH handed AS ({handed}) {held.format(source=source)}"


@functools.cache
def _numbered() -> str:
    """``_statement`` with its parameters numbered, as ``PREPARE`` takes them."""
    statement = _statement()
    for number, name in enumerate(PARAMETERS, 1):
        statement = statement.replace(f"%({name})s", f"${number}")
    return statement


def _mark_now(values: dict) -> bool:
    """The two updates in one transaction, answered at once (SQLite)."""
    handed, held = _updates()
    values = {**values, "now": db_connection.ops.adapt_datetimefield_value(values["now"])}
    with transaction.atomic(), db_connection.cursor() as cursor:
        cursor.execute(handed, values)
        cursor.execute(held.format(source=""), values)
        return cursor.rowcount == 1
