"""EHR import throughput and list-endpoint latency.

1. Import of ``BENCH_PATIENTS`` (default 1,000) patients, each with one CAR-T infusion, as one Bulk Data NDJSON
   export, schedule planning included: seconds and visit rows per second, beside a raw bulk insert of the same
   visit rows (``COPY`` on PostgreSQL, ``executemany`` on SQLite) into a table of the same shape.
   Target: the import within 10x of the raw insert.
2. ``GET /api/v1/visits`` under ``BENCH_CONCURRENCY`` (default 8) concurrent clients on loopback (gunicorn, 4
   workers x 2 threads), ``BENCH_REQUESTS`` (default 400) requests: p50 and p99 latency.

It works in a scratch database (``bench_api_<name>`` beside DATABASE_URL's, or a temporary SQLite file), created and
dropped here.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
PRODUCT_CODES = ["Q2041", "Q2042", "Q2053", "Q2054", "Q2055", "Q2056"]


def ndjson_export(n: int, today: dt.date) -> bytes:
    """A Bulk Data export: n Patients, then n Procedures coded as CAR-T, infused over the past two years."""
    lines = []
    for i in range(n):
        lines.append(
            {
                "resourceType": "Patient",
                "id": f"bench-{i}",
                "identifier": [
                    {
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                        "system": "urn:bench:mrn",
                        "value": f"B{i:06d}",
                    }
                ],
                "name": [{"family": f"Bench{i}", "given": ["Pat"]}],
                "gender": "female" if i % 2 else "male",
                "birthDate": f"{1940 + i % 50}-0{1 + i % 9}-1{i % 9}",
            }
        )
    for i in range(n):
        lines.append(
            {
                "resourceType": "Procedure",
                "id": f"bench-proc-{i}",
                "status": "completed",
                "code": {"coding": [{"system": HCPCS, "code": PRODUCT_CODES[i % len(PRODUCT_CODES)]}]},
                "subject": {"reference": f"Patient/bench-{i}"},
                "performedDateTime": (today - dt.timedelta(days=i % 730)).isoformat(),
            }
        )
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def raw_insert_seconds(connection) -> tuple[int, float]:
    """Copy every stored visit row into a same-shaped scratch table, the fastest way the database offers."""
    from surveillance.models import FollowUpVisit

    table = FollowUpVisit._meta.db_table
    columns = [f.column for f in FollowUpVisit._meta.concrete_fields if f.column != "id"]
    rows = list(FollowUpVisit.objects.values_list(*[f.attname for f in FollowUpVisit._meta.concrete_fields][1:]))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_visit_copy")
        if connection.vendor == "postgresql":
            cursor.execute(f"CREATE TABLE bench_visit_copy (LIKE {table} INCLUDING DEFAULTS)")
            cursor.execute("ALTER TABLE bench_visit_copy DROP COLUMN id")
        else:
            cursor.execute(f"CREATE TABLE bench_visit_copy AS SELECT {', '.join(columns)} FROM {table} WHERE 0")
    json_positions = [
        i for i, f in enumerate(FollowUpVisit._meta.concrete_fields[1:]) if f.get_internal_type() == "JSONField"
    ]
    prepared = [
        tuple(json.dumps(value) if i in json_positions else value for i, value in enumerate(row)) for row in rows
    ]
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY bench_visit_copy ({', '.join(columns)}) FROM STDIN") as copy:
                for row in prepared:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f"INSERT INTO bench_visit_copy ({', '.join(columns)}) VALUES ({marks})", prepared)
    elapsed = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_visit_copy")
    return len(rows), elapsed


def import_throughput(n: int) -> bool:
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from surveillance import ehr_import
    from surveillance.models import FollowUpVisit, Infusion, Patient, Reminder, TreatmentCentre
    from surveillance.seeding import seeds_load

    seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    centre = TreatmentCentre.objects.create(code="bench", name="Bench", care_team_email="bench@example.org")
    body = ndjson_export(n, timezone.localdate())
    t0 = time.perf_counter()
    report = ehr_import.ndjson_import(io.BytesIO(body).readlines(), centre)
    elapsed = time.perf_counter() - t0
    visits = FollowUpVisit.objects.count()
    assert report.error_count == 0, report.as_dict()["errors"][:3]
    assert Patient.objects.count() == n and Infusion.objects.count() == n
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum does after a bulk load: the list's plan depends on it
    copied, raw = raw_insert_seconds(connection)
    ratio = elapsed / raw if raw else float("inf")
    print(f"import of {n} patients + {n} infusions as NDJSON ({len(body) / 1e6:.1f} MB), planning included:")
    print(f"  {elapsed:8.2f} s, {visits} visits and {Reminder.objects.count()} reminders planned")
    print(f"  {visits / elapsed:10.0f} visit rows/s ({n / elapsed:.0f} patients/s)")
    method = "COPY" if connection.vendor == "postgresql" else "executemany INSERT"
    print(f"raw {method} of the same {copied} visit rows: {raw:.3f} s, {copied / raw:10.0f} rows/s")
    print(f"import / raw: {ratio:.1f}x; target within 10x: {'OK' if ratio <= 10 else 'ABOVE TARGET'}")
    return ratio <= 10


def list_latency(db_url: str, requests: int, concurrency: int) -> None:
    from surveillance.api.auth import api_token_create
    from surveillance.models import TreatmentCentre

    raw = api_token_create("bench-load", [TreatmentCentre.objects.get(code="bench")])[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": db_url, "CARTWATCH_API_RATE_TOKEN": "1000000/min"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "4",
            "--threads",
            "2",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/v1/visits?status=scheduled&page_size=50"
    headers = {"Authorization": f"Bearer {raw}"}
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        latencies: list[float] = []
        lock = threading.Lock()
        per_client = requests // concurrency

        def client():
            for _ in range(per_client):
                t0 = time.perf_counter()
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30).read()
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"GET /api/v1/visits (page of 50), {concurrency} concurrent clients, {len(latencies)} requests:")
    print(f"  p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, {len(latencies) / wall:.0f} req/s")


def main() -> int:
    import django

    django.setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    scratch = Path(tempfile.mkdtemp()) / "bench_api.sqlite3"
    if connection.vendor == "sqlite":
        connection.settings_dict.setdefault("TEST", {})["NAME"] = str(scratch)
    else:  # a scratch database of its own, never the test suite's
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_api_{old_name}"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        ok = import_throughput(int(os.environ.get("BENCH_PATIENTS", "1000")))
        s = connection.settings_dict
        db_url = (
            f"sqlite:///{name}"
            if connection.vendor == "sqlite"
            else f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{name}"
        )
        list_latency(
            db_url, int(os.environ.get("BENCH_REQUESTS", "400")), int(os.environ.get("BENCH_CONCURRENCY", "8"))
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
