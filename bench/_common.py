"""What the benchmarks share: scratch databases, child processes with their peak memory, the summary table."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import platform
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

ROOT = Path(__file__).resolve().parents[1]
CODES_CSV = Path(os.environ.get("BENCH_CODES_CSV", "/work/shared/ehr-samples/car_t_codes.csv"))


# --------------------------------------------------------------------------------------------- the summary table
@dataclass
class Row:
    benchmark: str
    figure: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target, or not measured


RESULTS: list[Row] = []


def record(benchmark: str, figure: str, baseline: str, ratio: str, target: str, met: bool | None) -> None:
    RESULTS.append(Row(benchmark, figure, baseline, ratio, target, met))


def machine() -> str:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = "-"
    with contextlib.suppress(Exception):
        import django

        django.setup()
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection._nodb_cursor() as cursor:  # works whichever database DATABASE_URL names
                cursor.execute("SHOW server_version")
                pg = cursor.fetchone()[0]
                cursor.execute("SHOW shared_buffers")
                pg += f" (shared_buffers {cursor.fetchone()[0]}"
                cursor.execute("SHOW max_wal_size")
                pg += f", max_wal_size {cursor.fetchone()[0]})"
            connection.close()
        else:
            pg = f"none ({connection.vendor})"
    return (
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {mem_gb:.1f} GiB memory, "
        f"PostgreSQL {pg}, Python {platform.python_version()}, {platform.machine()}; "
        f"shared with other work, so figures are noisy"
    )


def print_table(rows: list[Row] | None = None) -> None:
    rows = RESULTS if rows is None else rows
    head = ("benchmark", "figure", "baseline", "ratio", "target", "met?")
    body = [
        (r.benchmark, r.figure, r.baseline, r.ratio, r.target, "-" if r.met is None else ("yes" if r.met else "NO"))
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=False)]
    print()
    print(machine())
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in body:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
    sys.stdout.flush()


def median(values) -> float:
    return statistics.median(values)


def free_port() -> int:
    """A loopback port no one listens on now, for a server of the benchmark's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------------- scratch databases
@contextlib.contextmanager
def scratch_database(prefix: str):
    """A database of this benchmark's own (``bench_<prefix>_<name>_<pid>``), migrated, dropped on the way out.

    Yields the database URL a child process can use. On SQLite, a temporary file.
    """
    import tempfile

    import django

    django.setup()
    from django.db import connection

    old_name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    saved_test_name = test.get("NAME")
    if connection.vendor == "sqlite":
        test["NAME"] = str(Path(tempfile.mkdtemp()) / f"bench_{prefix}.sqlite3")
    else:  # never the test suite's database, nor that of another benchmark running at the same time
        test["NAME"] = f"bench_{prefix}_{old_name}_{os.getpid()}"
    name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield database_url(connection, name)
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        test["NAME"] = saved_test_name


def database_url(connection, name: str) -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST']}:{s['PORT'] or 5432}/{name}"


def copy_baseline(connection, model) -> tuple[int, float]:
    """The raw baseline of an import: COPY the model's stored rows out to a file, then time COPY-ing them into a
    same-shaped, same-indexed table (``LIKE ... INCLUDING ALL``). Returns (rows, seconds)."""
    import tempfile

    table = model._meta.db_table
    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "rows.copy"
        with connection.cursor() as cursor:
            with dump.open("wb") as out, cursor.cursor.copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for chunk in copy:
                    out.write(chunk)
            cursor.execute("DROP TABLE IF EXISTS bench_copy")
            cursor.execute(f"CREATE TABLE bench_copy (LIKE {table} INCLUDING ALL)")
            cursor.execute("SELECT count(*) FROM " + table)
            rows = cursor.fetchone()[0]
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            dump.open("rb") as source,
            cursor.cursor.copy("COPY bench_copy FROM STDIN (FORMAT binary)") as copy,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        elapsed = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_copy")
    return rows, elapsed


@contextlib.contextmanager
def autovacuum_stand_in(db_url: str, every: float = 30.0):
    """While the body runs, ``ANALYZE`` the database every ``every`` seconds if the server's autovacuum is off.

    Production runs with autovacuum, which analyses a table as it grows; a server with it off (as a development
    machine's may be) leaves an import planning its per-batch queries on a table it believes empty, and measures
    that instead. The stand-in runs on a connection of its own, and its cost is on the machine as autovacuum's
    would be. Says which it did.
    """
    import threading

    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
    if autovacuum == "on":
        print("autovacuum: on (the server analyses the tables as they grow)")
        yield
        return
    print(f"autovacuum: off on this server; a stand-in runs ANALYZE every {every:.0f} s meanwhile")
    stop = threading.Event()

    def analyse() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.wait(every):
                conn.execute("ANALYZE")

    thread = threading.Thread(target=analyse, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --------------------------------------------------------------------------------------------- child processes
def print_profile(path: Path) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)


@dataclass
class ChildResult:
    returncode: int
    seconds: float
    cpu_seconds: float  # user + system
    max_rss_mb: float
    stdout: str
    stderr: str


def run_child(args: list[str], env: dict, *, timeout: float | None = None) -> ChildResult:
    """Run a command, with its wall time, its CPU time and its own peak RSS (``wait4``: this child's, not every
    child's)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=err)
        deadline = None if timeout is None else started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in KiB on Linux
        return ChildResult(
            proc.returncode,
            seconds,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def children_max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def tree_peak_rss_mb(pid: int) -> float:
    """The largest peak RSS (``VmHWM``) among a running process and its descendants: a Celery worker's pool
    processes, which did the work, while they are still alive."""
    peaks, pending = [], [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{current}/status").read_text()
            peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return max(peaks, default=0.0)


# --------------------------------------------------------------------------------------------- CPU from /proc
def _stat_fields(proc: Path) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces): state, ppid, ..."""
    return (proc / "stat").read_text().rsplit(")", 1)[1].split()


def _processes(keep) -> list[int]:
    """The pids of the processes whose ``/proc`` entry ``keep`` accepts (one gone meanwhile is left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if keep(entry):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _process_cpu(pid: int) -> float | None:
    """User and system CPU seconds so far of one process; None if it is gone."""
    try:
        fields = _stat_fields(Path(f"/proc/{pid}"))
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpu_seconds(pids_of) -> float:
    """User and system CPU seconds so far of the processes ``pids_of()`` names (read from ``/proc``)."""
    return sum(seconds for pid in pids_of() if (seconds := _process_cpu(pid)) is not None)


def children_of(parent: int):
    """The pids whose parent is ``parent`` (gunicorn's workers)."""
    return lambda: _processes(lambda proc: int(_stat_fields(proc)[1]) == parent)


def backends_of(database: str):
    """The pids of the PostgreSQL backends serving ``database`` on this machine (by their process title)."""

    def serves(proc: Path) -> bool:
        title = (proc / "cmdline").read_bytes().decode(errors="replace")
        return title.startswith("postgres: ") and f" {database} " in title

    return lambda: _processes(serves)


class NewBackendsCpu:
    """The CPU seconds spent by the PostgreSQL backends that start serving ``database`` inside the ``with`` block
    (those connected before, such as the ANALYZE stand-in's, are left out): a child process's own backends.

    A backend's CPU is readable only while it lives, so each is read every ``every`` seconds and its last reading
    kept: what it spends in the last moments before it exits is missed (at most ``every`` seconds' worth)."""

    def __init__(self, database: str, every: float = 0.2):
        self.pids_of, self.every = backends_of(database), every
        self.last: dict[int, float] = {}  # pid -> its CPU seconds when last read
        self.seconds = 0.0

    def __enter__(self) -> NewBackendsCpu:
        import threading

        before = set(self.pids_of())
        self.stop = threading.Event()

        def sample() -> None:
            while True:
                for pid in set(self.pids_of()) - before:
                    if (seconds := _process_cpu(pid)) is not None:
                        self.last[pid] = seconds
                if self.stop.wait(self.every):
                    return

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = sum(self.last.values())


# --------------------------------------------------------------------------------------------- a Bulk Data export
def bench_centre() -> list[dict]:
    """Load the seeds and create the import benchmarks' centre (``bench``); returns the CAR-T code index rows the
    generated exports draw their infusion codes from."""
    from django.conf import settings

    from surveillance.models import ProductCode, TreatmentCentre
    from surveillance.seeds.loader import seeds_load

    seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    TreatmentCentre.objects.create(
        code="bench", name="Bench Centre", time_zone="America/New_York", care_team_email="team@example.org"
    )
    return [
        {"system": r["system"], "code": r["code"], "product": r["product__code"], "marks_infusion": r["marks_infusion"]}
        for r in ProductCode.objects.values("system", "code", "product__code", "marks_infusion")
    ]


def infusion_codes(index_rows) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Product-naming CAR-T codes from the shared code list that the catalogue knows, split by resource kind.

    Returns (procedure codes: HCPCS and ICD-10-PCS, medication codes: RxNorm and NDC).
    """
    known = {(r["system"], r["code"]) for r in index_rows if r["marks_infusion"] and r["product"]}
    procedure, medication = [], []
    with CODES_CSV.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["code_system"], row["code"])
            if key not in known:
                continue
            (medication if ("rxnorm" in key[0] or key[0].endswith("/ndc")) else procedure).append(key)
    if not procedure or not medication:
        raise RuntimeError(f"no usable CAR-T codes in {CODES_CSV}")
    return procedure, medication


def write_bulk_export(path: Path, n: int, index_rows, *, first: dt.date, last: dt.date, seed: int = 7) -> int:
    """Write a Bulk Data export to ``path``, streamed: n Patient lines, then one CAR-T resource per patient.

    Half the infusions are Procedures (HCPCS / ICD-10-PCS), half MedicationAdministrations (RxNorm / NDC), with
    dates spread over ``first`` .. ``last``. Returns the file's size in bytes.
    """
    procedure_codes, medication_codes = infusion_codes(index_rows)
    rng = random.Random(seed)
    span = (last - first).days
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(365 * 60))
            out.write(
                dumps(
                    {
                        "resourceType": "Patient",
                        "id": f"bench-{i}",
                        "identifier": [
                            {
                                "type": {
                                    "coding": [
                                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                                    ]
                                },
                                "system": "urn:bench:mrn",
                                "value": f"B{i:07d}",
                            }
                        ],
                        "name": [{"family": f"Bench{i}", "given": ["Pat"]}],
                        "gender": "female" if i % 2 else "male",
                        "birthDate": born.isoformat(),
                        "telecom": [{"system": "email", "value": f"p{i}@example.org"}],
                    }
                )
                + "\n"
            )
        for i in range(n):
            day = (first + dt.timedelta(days=rng.randrange(span + 1))).isoformat()
            if i % 2:
                system, code = procedure_codes[i % len(procedure_codes)]
                resource_ = {
                    "resourceType": "Procedure",
                    "id": f"bench-proc-{i}",
                    "status": "completed",
                    "code": {"coding": [{"system": system, "code": code}]},
                    "subject": {"reference": f"Patient/bench-{i}"},
                    "performedDateTime": day,
                }
            else:
                system, code = medication_codes[i % len(medication_codes)]
                resource_ = {
                    "resourceType": "MedicationAdministration",
                    "id": f"bench-med-{i}",
                    "status": "completed",
                    "medicationCodeableConcept": {"coding": [{"system": system, "code": code}]},
                    "subject": {"reference": f"Patient/bench-{i}"},
                    "effectiveDateTime": day,
                }
            out.write(dumps(resource_) + "\n")
    return path.stat().st_size


# --------------------------------------------------------------------------------------------- data
def open_visit(centre, protocol, mrn: str, email: str, today: dt.date, phone: str = ""):
    """A new patient with an infusion 400 days ago and one visit of the protocol's last rule, its window open now:
    a visit whose reminders the dispatcher will send. With a ``phone``, the patient consents to SMS and prefers it."""
    from surveillance.models import CarTProduct, Infusion, Patient

    rule = protocol.rules.order_by("position").last()
    sms = {"phone": phone, "sms_consent": True, "preferred_channel": "sms"} if phone else {}
    patient = Patient.objects.create(centre=centre, mrn=mrn, email=email, **sms)
    infusion = Infusion.objects.create(
        patient=patient,
        product=CarTProduct.objects.order_by("pk").first(),
        infusion_date=today - dt.timedelta(days=400),
        protocol=protocol,
    )
    visit = visit_window_open(infusion, rule, today)
    visit.save()
    return visit


def visit_window_open(infusion, rule, today: dt.date, due_in_days: int = 5):
    """An unsaved visit of ``rule`` for ``infusion`` whose window is open on ``today``, due ``due_in_days`` later."""
    from surveillance.models import FollowUpVisit

    return FollowUpVisit(
        infusion=infusion,
        rule=rule,
        rule_code=rule.code,
        occurrence=1,
        label=rule.label,
        kind=rule.kind,
        due_date=today + dt.timedelta(days=due_in_days),
        window_start=today - dt.timedelta(days=10),
        window_end=today + dt.timedelta(days=20),
        reminders_planned_for=0,
    )
