"""The plan PostgreSQL makes for a statement, read as a registry's tables would be."""

from __future__ import annotations

from django.db import connection


def index_plan(sql: str, params: list | None = None) -> str:
    """``EXPLAIN`` of ``sql`` with sequential scans priced out: a test's tables hold a few rows, which the planner
    would read whole, where at a registry's size it reads an index if one serves. ``params`` None: ``sql`` as
    Django's query log holds it, its values written in."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())
