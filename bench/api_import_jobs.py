"""EHR imports through the API as production runs them: uploads answered 202 and finished by a Celery worker.

The image's web command (``bench.api_load``: gunicorn's sync workers, as many as the image runs, the access log
on) and the compose file's worker command (``celery -A config worker --concurrency=2``) serve a scratch database,
on the broker of ``CELERY_BROKER_URL`` (a Redis server; a queue of this run's own). ``BENCH_JOB_UPLOADS`` (default 8)
integration clients each POST a Bulk Data export of ``BENCH_JOB_PATIENTS`` (default 1,000) patients of their own,
all at once, to ``/api/v1/import/fhir`` with ``Prefer: respond-async``, then follow the status URL each 202 gives
until the job has finished. An export larger than the upload limit (``CARTWATCH_IMPORT_MAX_BYTES``, 50 MB, or
``BENCH_JOB_PART_BYTES``) goes in parts cut at line ends, as a Bulk Data server splits its output into files: each
part posted once the one before has finished. ``BENCH_JOB_UPLOADS=1 BENCH_JOB_PATIENTS=100000`` is the registry's
first import (about 70 MB: two parts). On a server with autovacuum off, ``ANALYZE`` runs every 30 s meanwhile, as
autovacuum would (``autovacuum_stand_in``): without it the per-batch queries are planned on tables believed empty,
and a 100,000-patient import slows as they grow.

Reported: how long the uploads took to be answered (the slowest), the time until the last job finished, patients
per second, and every answer that was not 202 then 200 (a 5xx is a failure, as is a job that did not finish, a
patient or infusion count that is not every upload's, or an entry a job's report refused). The run fails on any
of those, and when a worker process (the Celery worker and its pool, read before it stops) peaked above 300 MB.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from bench._common import (
    ROOT,
    autovacuum_stand_in,
    bench_centre,
    record,
    scratch_database,
    tree_peak_rss_mb,
    write_bulk_export,
)
from bench.api_load import gunicorn, production_workers, shared_cache_url, stop, wait_ready

NDJSON = "application/fhir+ndjson"
#: The most memory a worker process may hold, however large the export: a job streams it, never holds the cohort.
TARGET_RSS_MB = 300.0
#: How long the jobs may take in all before the run is called failed.
DEADLINE_SECONDS = float(os.environ.get("BENCH_JOB_DEADLINE_SECONDS", "3600"))


def request(url: str, token: str, *, data: bytes | None = None) -> tuple[int, dict, float]:
    """One request: (status, headers, seconds). An HTTP error is an answer too."""
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers |= {"Content-Type": NDJSON, "Prefer": "respond-async"}
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as answer:
            answer.read()
            return answer.status, dict(answer.headers), time.perf_counter() - started
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, dict(error.headers), time.perf_counter() - started


def upload(base: str, token: str, payload: bytes) -> dict:
    """POST one export, then follow its status URL until the job has finished."""
    status, headers, seconds = request(f"{base}/api/v1/import/fhir", token, data=payload)
    outcome = {"post": status, "post_seconds": seconds, "polls": 0, "final": None}
    if status != 202:
        return outcome
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(float(headers.get("Retry-After", "1")) if outcome["polls"] == 0 else 1.0)
        status, _headers, _ = request(headers["Location"], token)
        outcome["polls"] += 1
        if status != 202:
            outcome["final"] = status
            break
    outcome["done_at"] = time.perf_counter()
    return outcome


def upload_parts(base: str, token: str, parts: list[bytes]) -> list[dict]:
    """A client's export file by file, as a Bulk Data client posts a server's output: each part once the one
    before it has finished (its infusions name patients of an earlier part)."""
    outcomes = []
    for part in parts:
        outcomes.append(upload(base, token, part))
        if (outcomes[-1]["post"], outcomes[-1]["final"]) != (202, 200):
            break
    return outcomes


def split(payload: bytes, limit: int) -> list[bytes]:
    """``payload`` cut at line ends into parts of at most ``limit`` bytes: a Bulk Data server splits a large
    export into files the same way, and the API refuses an upload over ``CARTWATCH_IMPORT_MAX_BYTES``."""
    parts, start = [], 0
    while len(payload) - start > limit:
        end = payload.rindex(b"\n", start, start + limit) + 1
        parts.append(payload[start:end])
        start = end
    return [*parts, payload[start:]]


def exports(folder: Path, uploads: int, patients: int) -> list[bytes]:
    """One export per client, each of patients of its own (ids and MRNs prefixed by the client)."""
    index_rows = bench_centre()
    template = folder / "export.ndjson"
    today = dt.date.today()
    write_bulk_export(template, patients, index_rows, first=today - dt.timedelta(days=3 * 365), last=today)
    text = template.read_text(encoding="utf-8")
    return [
        text.replace('"bench-', f'"c{k}-')
        .replace('"Patient/bench-', f'"Patient/c{k}-')
        .replace('"value":"B', f'"value":"C{k}B')
        .encode()
        for k in range(uploads)
    ]


def main() -> int:
    uploads = int(os.environ.get("BENCH_JOB_UPLOADS", "8"))
    patients = int(os.environ.get("BENCH_JOB_PATIENTS", "1000"))
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        print("api_import_jobs: skipped (needs a Redis broker: set CELERY_BROKER_URL)")
        record("API import jobs", "skipped (no Redis broker)", "-", "-", "-", None)
        return 0
    with scratch_database("jobs") as db_url, tempfile.TemporaryDirectory() as folder:
        from django.db import connection

        from surveillance.api.auth import api_token_create
        from surveillance.imports.ehr_import import import_max_bytes
        from surveillance.models import ImportJob, Infusion, Patient, TreatmentCentre

        limit = int(os.environ.get("BENCH_JOB_PART_BYTES", str(import_max_bytes())))
        payloads = [split(payload, limit) for payload in exports(Path(folder), uploads, patients)]
        token = api_token_create("bench-jobs", [TreatmentCentre.objects.get(code="bench")])[1]
        connection.close()
        queue = f"bench-jobs-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "DATABASE_CONN_MAX_AGE": "60",
            "CARTWATCH_CACHE_URL": shared_cache_url(),
            "CARTWATCH_API_RATE_TOKEN": "100000000/min",
            "CELERY_TASK_DEFAULT_QUEUE": queue,
        }
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING", "--concurrency=2"),
                *("--queues", queue, "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with (
            (Path(folder) / "access.log").open("wb") as access_log,
            autovacuum_stand_in(db_url),  # as production's autovacuum, on a server that has it off
        ):
            server, port = gunicorn("config.wsgi:application", env, production_workers(), 1, access_log)
            base = f"http://127.0.0.1:{port}"
            try:
                wait_ready(f"{base}/api/v1/", {"Authorization": f"Bearer {token}"}, server)
                started = time.perf_counter()
                with concurrent.futures.ThreadPoolExecutor(uploads) as pool:
                    outcomes = list(pool.map(lambda parts: upload_parts(base, token, parts), payloads))
                finished = max(o.get("done_at", started) for parts in outcomes for o in parts) - started
                worker_rss = tree_peak_rss_mb(worker.pid)
            finally:
                stop(server)
                worker.terminate()
                worker.wait(timeout=60)
        stored = Patient.objects.count()
        planned = Infusion.objects.count()
        refused = sum(len((job.result or {}).get("errors", [])) for job in ImportJob.objects.all())
        statuses = sorted(ImportJob.objects.values_list("status", flat=True))
    answers = [(o["post"], o["final"]) for parts in outcomes for o in parts]
    failed = [a for a in answers if a != (202, 200)] + [None] * (sum(map(len, payloads)) - len(answers))
    slowest_post = max(o["post_seconds"] for parts in outcomes for o in parts)
    total = uploads * patients
    ok = not failed and stored == planned == total and not refused and worker_rss < TARGET_RSS_MB
    in_parts = f" in {len(payloads[0])} parts each" if len(payloads[0]) > 1 else ""
    print(
        f"{uploads} uploads{in_parts} of {patients:,} patients at once (load average {os.getloadavg()[0]:.2f}): "
        f"answered in at most {slowest_post:.2f} s; every job finished {finished:.1f} s after the first POST; "
        f"{total / finished:.0f} patients/s; answers {answers}; jobs {statuses}; patients stored {stored:,}, "
        f"infusions {planned:,}, entries refused {refused:,}; worker peak RSS {worker_rss:.0f} MB"
    )
    record(
        f"API import as jobs, {uploads} x {patients:,} patients at once{in_parts}",
        f"{finished:.1f} s to the last job; {total / finished:.0f} patients/s; POSTs answered within "
        f"{slowest_post:.2f} s; {len(failed)} not 202 then 200; {planned:,} of {total:,} infusions planned, "
        f"{refused:,} entries refused; worker peak RSS {worker_rss:.0f} MB",
        "-",
        "-",
        f"every upload 202, every job 200, no 5xx; worker under {TARGET_RSS_MB:.0f} MB",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
