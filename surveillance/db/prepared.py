"""A statement run prepared on Django's PostgreSQL connection, for the few that run once a message, a group or a
request.

The ORM compiles a query afresh each time and PostgreSQL plans it afresh; for the dispatcher's per-message and
per-group writes, and for the visit list's page and the audit row of every API request, that was a measurable share
of the work. Run through psycopg's own cursor with ``prepare=True``, such a statement is planned once per
connection, in the connection's current transaction, with Django's error wrapper around it (a failure raises
Django's database errors, as the ORM's would). ``prepared_cursor`` runs it beside Django's cursor wrapper (not
counted as a query); ``counted_prepared_cursor`` inside it, counted and logged as any other query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import psycopg
from django.db import connection
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper


@contextlib.contextmanager
def prepared_cursor(statement: str, params: Mapping) -> Iterator[psycopg.Cursor]:
    """The cursor that ran ``statement`` (named ``%(...)s`` parameters) prepared; read its rows or count inside."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, prepare=True)
        yield cursor


class PreparingCursor(psycopg.Cursor):
    """A psycopg cursor that binds every statement's parameters on the server and prepares the statement."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)


class _PreparedStatementLog(CursorDebugWrapper):
    """Django's debug wrapper, logging a prepared statement with its parameters written in, as Django logs any
    other: Django reads the text psycopg sent, and a prepared execution sends none (the log would say None)."""

    def execute(self, sql, params=None):
        try:
            text = self.db.ops.compose_sql(sql, params)
        except (TypeError, ValueError, psycopg.Error):
            text = sql
        with self.debug_sql(text, params):
            return CursorWrapper.execute(self, sql, params)


@contextlib.contextmanager
def counted_prepared_cursor(
    database=connection, cursor_class: type[PreparingCursor] = PreparingCursor
) -> Iterator[CursorWrapper]:
    """Django's cursor wrapper (counted, logged where queries are, its errors Django's) around a ``cursor_class`` on
    ``database``'s PostgreSQL connection."""
    database.ensure_connection()
    raw = cursor_class(database.connection)
    with _PreparedStatementLog(raw, database) if database.queries_logged else database.make_cursor(raw) as cursor:
        yield cursor
