"""A statement run prepared on Django's PostgreSQL connection, for the few that run once a message or a group.

The ORM compiles a query afresh each time and PostgreSQL plans it afresh; for the dispatcher's per-message and
per-group writes that was a measurable share of each message. Run through psycopg's own cursor with
``prepare=True``, such a statement is planned once per connection, in the connection's current transaction, with
Django's error wrapper around it (a failure raises Django's database errors, as the ORM's would).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import psycopg
from django.db import connection


@contextlib.contextmanager
def prepared_cursor(statement: str, params: Mapping) -> Iterator[psycopg.Cursor]:
    """The cursor that ran ``statement`` (named ``%(...)s`` parameters) prepared; read its rows or count inside."""
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(statement, params, prepare=True)
        yield cursor
