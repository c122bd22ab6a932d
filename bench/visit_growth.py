"""The database's own cost of a registry's visit rows as the table grows: the raw baseline of the large import.

The 1,000,000-patient import's target is a per-patient cost within 1.2x of the 10,000-patient run's. Whatever the
import does, PostgreSQL must add each visit to the visit table and its indexes; this measures how that cost alone
grows. The visit rows of a ``BENCH_GROWTH_PATIENTS`` (10,000)-patient import (``import_ehr`` of a Bulk Data
export, as ``import_plan`` writes it: about 46 visits a patient) are inserted again and again, ids and infusions
shifted, into a table of the visit table's shape and indexes (``LIKE ... INCLUDING ALL``), ``BENCH_GROWTH_CHUNKS``
(20) times, each chunk one ``INSERT ... SELECT`` (100 chunks: a million patients' worth, about 47M rows). Then the
same into a table without the indexes keyed on a date (due date, window start or end: the worklists', the
export's, the sweep's and the outbox's), to tell their share.

Printed: every fifth chunk's seconds, its ratio to the first chunk's and the table's size, with the load average.
Recorded: the last chunk's time against the first, with and without the date-keyed indexes. No target of its own:
it says how far below the import's 1.2x the database's own growth already is.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._common import bench_centre, record, run_child, scratch_database, write_bulk_export

#: What makes an index "keyed on a date": any of these columns in its definition.
DATE_COLUMNS = ("due_date", "window_start", "window_end")


def grow(cursor, table: str, source: str, columns: list[str], chunks: int, *, dated: bool) -> tuple[float, float]:
    """Insert ``source``'s rows into a new ``table`` of its shape ``chunks`` times (with its date-keyed indexes or
    without); returns the first and the last chunk's seconds."""
    cursor.execute(f"DROP TABLE IF EXISTS {table}")
    cursor.execute(f"CREATE TABLE {table} (LIKE {source} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [source])
    for n, (name, definition) in enumerate(cursor.fetchall()):
        if not dated and any(column in definition for column in DATE_COLUMNS):
            continue
        cursor.execute(definition.replace(f"INDEX {name} ON public.{source}", f"INDEX {table}_{n} ON {table}"))
    cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [table])
    print(f"  {'with' if dated else 'without'} the date-keyed indexes: {cursor.fetchone()[0]} indexes", flush=True)
    cursor.execute(f"SELECT count(*), max(id) + 1, max(infusion_id) + 1 FROM {source}")
    rows, id_step, infusion_step = cursor.fetchone()
    shifted = ", ".join(
        f"id + %(k)s * {id_step}"
        if column == "id"
        else f"infusion_id + %(k)s * {infusion_step}"
        if column == "infusion_id"
        else column
        for column in columns
    )
    insert = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {shifted} FROM {source}"
    first = last = 0.0
    for k in range(chunks):
        started = time.perf_counter()
        cursor.execute(insert, {"k": k})
        last = time.perf_counter() - started
        first = first or last
        if k % 5 == 0 or k == chunks - 1:
            cursor.execute(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")
            print(
                f"  {'with' if dated else 'without'} the date-keyed indexes, chunk {k + 1}: "
                f"{(k + 1) * rows / 1e6:.1f}M rows, {last:.2f} s ({last / first:.2f}x the first), "
                f"table and indexes {cursor.fetchone()[0]}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    cursor.execute(f"DROP TABLE {table}")
    return first, last


def main() -> int:
    patients = int(os.environ.get("BENCH_GROWTH_PATIENTS", "10000"))
    chunks = int(os.environ.get("BENCH_GROWTH_CHUNKS", "20"))
    with scratch_database("growth") as db_url:
        from django.db import connection

        if connection.vendor != "postgresql":
            print("visit_growth: skipped (PostgreSQL's indexes are what it measures)")
            return 0
        from surveillance.models import FollowUpVisit

        index_rows = bench_centre()
        with tempfile.TemporaryDirectory() as folder:
            export = Path(folder) / "export.ndjson"
            write_bulk_export(
                export, patients, index_rows, first=dt.date(2017, 1, 1), last=dt.date.today() - dt.timedelta(days=1)
            )
            connection.close()
            child = run_child(
                [sys.executable, "manage.py", "import_ehr", str(export), "--centre", "bench"],
                {**os.environ, "DATABASE_URL": db_url},
            )
        if child.returncode != 0:
            print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
            record("visit table growth", "FAILED", "-", "-", "reported", False)
            return 1
        source = FollowUpVisit._meta.db_table
        columns = [field.column for field in FollowUpVisit._meta.concrete_fields]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {source}")
            rows = cursor.fetchone()[0]
            print(f"{patients} patients imported: {rows} visit rows a chunk, {chunks} chunks", flush=True)
            first, last = grow(cursor, "bench_growth", source, columns, chunks, dated=True)
            bare_first, bare_last = grow(cursor, "bench_growth", source, columns, chunks, dated=False)
    total = rows * chunks
    record(
        f"visit table growth: {patients:,} patients' visits inserted {chunks} times ({total / 1e6:.1f}M rows)",
        f"last chunk {last:.1f} s, first {first:.1f} s; without the date-keyed indexes {bare_last:.1f} s, "
        f"first {bare_first:.1f} s ({bare_last / bare_first:.2f}x)",
        f"the first chunk, {first:.1f} s",
        f"{last / first:.2f}x",
        "reported",
        None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
