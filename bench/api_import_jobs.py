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

One upload of more than 10,000 patients (``BENCH_JOB_UPLOADS=1 BENCH_JOB_PATIENTS=1000000``: the registry-sized
import) is measured against the same job at 10,000 patients (``BENCH_JOB_BASELINE_PATIENTS``), run three times first
in the same run, each in a scratch database of its own: the time per patient may be at most 1.2x the median of
theirs.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench._common import (
    ROOT,
    autovacuum_stand_in,
    bench_centre,
    median,
    record,
    scratch_database,
    tree_peak_rss_mb,
    write_bulk_export,
)
from bench.api_load import gunicorn, production_workers, shared_cache_url, stop, wait_ready

NDJSON = "application/fhir+ndjson"
#: The most memory a worker process may hold, however large the export: a job streams it, never holds the cohort.
TARGET_RSS_MB = 300.0
#: A larger single import is measured against this one, run ``BASELINE_RUNS`` times first in the same run.
BASELINE_PATIENTS = int(os.environ.get("BENCH_JOB_BASELINE_PATIENTS", "10000"))
BASELINE_RUNS = 3
#: How much more time a patient may take in a registry-sized import than in the 10,000-patient one.
TARGET_PER_PATIENT_RATIO = 1.2
#: Set when the run is interrupted: every client stops following its job.
STOP = threading.Event()
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
        if STOP.wait(float(headers.get("Retry-After", "1")) if outcome["polls"] == 0 else 1.0):
            break
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


@dataclass
class JobsRun:
    """One run: every client's export posted at once and followed to its end."""

    uploads: int
    patients: int
    parts: int
    answers: list[tuple[int, int | None]]
    failed: list
    slowest_post: float
    finished: float
    #: From the first job's creation to the last one's end, as the jobs recorded them: the client's polling and the
    #: fixed costs of a run (the servers' start) left out, so that jobs of any size compare.
    jobs_seconds: float
    stored: int
    planned: int
    refused: int
    statuses: list[str]
    worker_rss: float

    @property
    def ok(self) -> bool:
        total = self.uploads * self.patients
        return not self.failed and self.stored == self.planned == total and not self.refused

    @property
    def per_second(self) -> float:
        return self.uploads * self.patients / self.jobs_seconds


def run_jobs(uploads: int, patients: int) -> JobsRun:
    """Post ``uploads`` exports of ``patients`` patients each at once, in a scratch database, to the production web
    command, with the compose file's worker finishing the jobs."""
    with scratch_database("jobs") as db_url, tempfile.TemporaryDirectory() as folder:
        from django.db import connection
        from django.db.models import Max, Min

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
            start_new_session=True,  # its own process group: stop_worker reaches the pool processes too
        )
        try:
            wait_worker(f"{queue}@{socket.gethostname()}", worker)
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
                        try:
                            outcomes = list(pool.map(lambda parts: upload_parts(base, token, parts), payloads))
                        except BaseException:  # Ctrl-C: the clients stop polling, so the servers stop at once
                            STOP.set()
                            raise
                    finished = max(o.get("done_at", started) for parts in outcomes for o in parts) - started
                    worker_rss = tree_peak_rss_mb(worker.pid)
                finally:
                    stop(server)
        finally:
            stop_worker(worker)
        stored = Patient.objects.count()
        planned = Infusion.objects.count()
        refused = sum(len((job.result or {}).get("errors", [])) for job in ImportJob.objects.all())
        statuses = sorted(ImportJob.objects.values_list("status", flat=True))
        span = ImportJob.objects.aggregate(first=Min("created_at"), last=Max("finished_at"))
    answers = [(o["post"], o["final"]) for parts in outcomes for o in parts]
    return JobsRun(
        uploads=uploads,
        patients=patients,
        parts=len(payloads[0]),
        answers=answers,
        failed=[a for a in answers if a != (202, 200)] + [None] * (sum(map(len, payloads)) - len(answers)),
        slowest_post=max(o["post_seconds"] for parts in outcomes for o in parts),
        finished=finished,
        jobs_seconds=(span["last"] - span["first"]).total_seconds() if span["last"] else finished,
        stored=stored,
        planned=planned,
        refused=refused,
        statuses=statuses,
        worker_rss=worker_rss,
    )


def wait_worker(name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the worker answers a ping: a job posted before would wait in the queue for its start, a fixed cost
    that would flatter a small run against a large one."""
    from config.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the Celery worker exited before it was ready")
        if app.control.ping([name], timeout=1.0):
            return
    raise RuntimeError(f"the Celery worker {name} did not answer a ping in {timeout:.0f} s")


def stop_worker(worker: subprocess.Popen) -> None:
    """A warm shutdown, which an idle worker (a finished run) makes at once; one still in a job (an interrupted run)
    would finish it first, so after a few seconds the whole process group is killed."""
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def report(run: JobsRun) -> None:
    print(
        f"{run.uploads} uploads of {run.patients:,} patients at once, {run.parts} part(s) each (load average "
        f"{os.getloadavg()[0]:.2f}): answered in at most {run.slowest_post:.2f} s; every job finished "
        f"{run.finished:.1f} s after the first POST ({run.jobs_seconds:.1f} s from the first job's creation to the "
        f"last one's end: {run.per_second:.0f} patients/s); answers {run.answers}; "
        f"jobs {run.statuses}; patients stored {run.stored:,}, infusions {run.planned:,}, entries refused "
        f"{run.refused:,}; worker peak RSS {run.worker_rss:.0f} MB",
        flush=True,
    )


def main() -> int:
    uploads = int(os.environ.get("BENCH_JOB_UPLOADS", "8"))
    patients = int(os.environ.get("BENCH_JOB_PATIENTS", "1000"))
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        print("api_import_jobs: skipped (needs a Redis broker: set CELERY_BROKER_URL)")
        record("API import jobs", "skipped (no Redis broker)", "-", "-", "-", None)
        return 0
    # A registry-sized import is measured against the same import at 10,000 patients, in the same run.
    baselines = []
    if uploads == 1 and patients > BASELINE_PATIENTS:
        for _ in range(BASELINE_RUNS):
            baselines.append(run_jobs(1, BASELINE_PATIENTS))
            report(baselines[-1])
    run = run_jobs(uploads, patients)
    report(run)
    in_parts = f" in {run.parts} parts each" if run.parts > 1 else ""
    figure = (
        f"{run.finished:.1f} s to the last job; {run.per_second:.0f} patients/s (jobs' own {run.jobs_seconds:.1f} s); "
        f"POSTs answered within "
        f"{run.slowest_post:.2f} s; {len(run.failed)} not 202 then 200; {run.planned:,} of "
        f"{run.uploads * run.patients:,} infusions planned, {run.refused:,} entries refused; worker peak RSS "
        f"{run.worker_rss:.0f} MB"
    )
    rss_ok = run.worker_rss < TARGET_RSS_MB
    if not baselines:
        ok = run.ok and rss_ok
        record(
            f"API import as jobs, {uploads} x {patients:,} patients at once{in_parts}",
            figure,
            "-",
            "-",
            f"every upload 202, every job 200, no 5xx; worker under {TARGET_RSS_MB:.0f} MB",
            ok,
        )
        return 0 if ok else 1
    base = median([b.per_second for b in baselines])
    ratio = base / run.per_second  # the time per patient, against the 10,000-patient job's
    ok = run.ok and rss_ok and all(b.ok for b in baselines) and ratio <= TARGET_PER_PATIENT_RATIO
    record(
        f"API import as jobs, {patients:,} patients{in_parts}",
        figure,
        f"{BASELINE_PATIENTS:,} patients as a job, same run: {base:.0f} patients/s (median; jobs' own "
        f"{', '.join(f'{b.jobs_seconds:.1f}' for b in baselines)} s)",
        f"{ratio:.2f}x per patient",
        f"within {TARGET_PER_PATIENT_RATIO}x per patient, worker under {TARGET_RSS_MB:.0f} MB",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
