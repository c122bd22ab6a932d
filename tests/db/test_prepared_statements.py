"""A statement run prepared through Django's cursor wrapper is counted and logged as any other: with its text and
its parameters written in, never as an empty entry a reader of the log would trip on."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.db.prepared import counted_prepared_cursor

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements"),
]


def test_it_logs_a_prepared_statement_with_its_parameters():
    with CaptureQueriesContext(connection) as captured, counted_prepared_cursor(connection) as cursor:
        cursor.execute("SELECT %s::int + 1, %s::text", [41, "it's"])
        assert cursor.fetchall() == [(42, "it's")]

    assert [query["sql"] for query in captured] == ["SELECT 41::int + 1, 'it''s'::text"]


def test_it_prepares_the_statement_on_the_server():
    with counted_prepared_cursor(connection) as cursor:
        cursor.execute("SELECT %s::int * 2", [21])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement = %s", ["SELECT $1::int * 2"])
        assert cursor.fetchone() == (1,)
