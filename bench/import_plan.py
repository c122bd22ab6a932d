"""Import and plan a cohort from a Bulk Data NDJSON export, beside a raw ``COPY`` of the same visit rows.

``BENCH_IMPORT_PATIENTS`` (default 100,000) patients, each with one CAR-T infusion (a Procedure or a
MedicationAdministration coded with a product code from the shared CAR-T code list, dated 2017 .. today), are
written to a file and imported by ``manage.py import_ehr FILE --centre bench`` in a child process: the same code
path as production, schedules and reminders planned. Reported: wall time, patients/s, visit rows/s, the child's
peak RSS (target < 300 MB: the import streams, it never holds the cohort) and the CPU time per patient of the child
and of its PostgreSQL backends, a figure that other work on a shared machine moves less than the wall time.

Baseline, in the same run: the imported visit rows are copied out to a file and ``COPY``-ed into a fresh table of
the same shape and indexes (``CREATE TABLE ... (LIKE ... INCLUDING ALL)``). Target: the import within 3x of that
at 100,000 patients, within 10x at a clinic's 1,000.
``BENCH_IMPORT_RUNS`` (3) runs, each in a fresh database with the COPY of its own rows just after its import: the
ratio is the median of the runs' ratios, each printed with the load average (the COPY's time moves with the
machine's moment as much as the import's does). ``BENCH_IMPORT_PROFILE=1`` runs the first child under cProfile,
timed by its own CPU time (waits on the database and on other work left out), and prints the top functions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import django

from bench._common import (
    NewBackendsCpu,
    autovacuum_stand_in,
    bench_centre,
    copy_baseline,
    median,
    print_profile,
    record,
    run_child,
    scratch_database,
    write_bulk_export,
)


def target_ratio(patients: int) -> float:
    """Within 3x of the COPY at registry scale (100,000 patients); a clinic's export of 1,000 patients, where
    start-up and per-batch costs weigh more, within 10x."""
    return 3.0 if patients >= 100_000 else 10.0


TARGET_RSS_MB = 300.0

#: ``python -c PROFILED OUT manage.py ...``: the command under cProfile timed by this process's CPU time.
PROFILED = """
import cProfile, runpy, sys, time
out = sys.argv.pop(1)
sys.argv = sys.argv[1:]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_path, sys.argv[0], run_name="__main__")
finally:
    profile.dump_stats(out)
"""


@dataclass
class ImportRun:
    """One import and its COPY baseline, each in a scratch database of its own."""

    seconds: float
    copy_seconds: float
    copied: int
    visits: int
    rss_mb: float
    load: float

    @property
    def ratio(self) -> float:
        return self.seconds / self.copy_seconds


def one_run(n: int, target: float, profile: bool) -> ImportRun | None:
    """Write the export, import it in a child process, then time the COPY of the visit rows it stored (None: the
    import failed, its output printed)."""
    with scratch_database("import") as db_url:
        from django.db import connection

        from surveillance.models import FollowUpVisit, Infusion, Patient, Reminder

        index_rows = bench_centre()
        with tempfile.TemporaryDirectory() as folder:
            export = Path(folder) / "export.ndjson"
            t0 = time.perf_counter()
            size = write_bulk_export(
                export, n, index_rows, first=dt.date(2017, 1, 1), last=dt.date.today() - dt.timedelta(days=1)
            )
            print(
                f"export: {n} patients + {n} infusions, {size / 1e6:.1f} MB, "
                f"written in {time.perf_counter() - t0:.1f} s"
            )
            connection.close()  # the child has the database to itself
            env = {**os.environ, "DATABASE_URL": db_url}
            command = ["manage.py", "import_ehr", str(export), "--centre", "bench"]
            prof = Path(folder) / "import.prof"
            prefix = [sys.executable, "-c", PROFILED, str(prof)] if profile else [sys.executable]
            with (
                autovacuum_stand_in(db_url),  # as production's autovacuum, on a server that has it off
                NewBackendsCpu(db_url.rsplit("/", 1)[1]) as backends,  # connected after the stand-in: the child's
            ):
                child = run_child([*prefix, *command], env)
            load = os.getloadavg()[0]
            if child.returncode != 0:
                print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
                return None
            if profile:
                print_profile(prof)
        report = json.loads(child.stdout)
        patients, infusions = Patient.objects.count(), Infusion.objects.count()
        visits, reminders = FollowUpVisit.objects.count(), Reminder.objects.count()
        assert report["error_count"] == 0 and patients == n and infusions == n, (report["errors"][:3], patients)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        copied, raw = copy_baseline(connection, FollowUpVisit)
    run = ImportRun(child.seconds, raw, copied, visits, child.max_rss_mb, load)
    print(f"import_ehr of {n} patients (Django start-up included): {child.seconds:.1f} s")
    print(f"  {n / child.seconds:8.0f} patients/s, {visits / child.seconds:8.0f} visit rows/s")
    print(
        f"  {visits} visits ({report['visits_planned']} planned), {reminders} reminders; "
        f"peak RSS {child.max_rss_mb:.0f} MB"
    )
    print(
        f"  CPU per patient: import_ehr {1000 * child.cpu_seconds / n:.2f} ms ({child.cpu_seconds:.1f} s), "
        f"its PostgreSQL backends {1000 * backends.seconds / n:.2f} ms ({backends.seconds:.1f} s); "
        f"load average {load:.1f}"
    )
    print(
        f"raw COPY of the same {copied} visit rows into a same-indexed table: {raw:.2f} s ({copied / raw:.0f} rows/s)"
    )
    print(f"import / COPY: {run.ratio:.1f}x (target <= {target:.0f}x)", flush=True)
    return run


def main() -> int:
    n = int(os.environ.get("BENCH_IMPORT_PATIENTS", "100000"))
    runs = int(os.environ.get("BENCH_IMPORT_RUNS", "3"))
    target = target_ratio(n)
    profile = os.environ.get("BENCH_IMPORT_PROFILE") == "1"
    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":  # known from the settings, before any database is made
        print("import_plan: skipped (needs PostgreSQL: set DATABASE_URL)")
        record("import+plan", "skipped (no PostgreSQL)", "-", "-", "-", None)
        return 0
    results: list[ImportRun] = []
    for number in range(runs):
        print(f"-- run {number + 1} of {runs}")
        run = one_run(n, target, profile and number == 0)
        if run is None:
            record("import+plan", "FAILED", "-", "-", f"<= {target:.0f}x COPY", False)
            return 1
        results.append(run)
    seconds, raw = median(r.seconds for r in results), median(r.copy_seconds for r in results)
    ratio, rss = median(r.ratio for r in results), max(r.rss_mb for r in results)
    each = ", ".join(f"{r.ratio:.1f}x at load {r.load:.1f}" for r in results)
    visits = results[0].visits
    print(f"import / COPY, each run: {each}; median {ratio:.1f}x (target <= {target:.0f}x)")
    ok_ratio, ok_rss = ratio <= target, rss < TARGET_RSS_MB
    record(
        f"import+plan {n} patients (median of {runs})",
        f"{seconds:.1f} s; {n / seconds:.0f} pat/s; {visits / seconds:.0f} visits/s; runs {each}",
        f"COPY {results[0].copied} rows {raw:.1f} s",
        f"{ratio:.1f}x",
        f"<= {target:.0f}x",
        ok_ratio,
    )
    record("import+plan peak RSS", f"{rss:.0f} MB", "-", "-", f"< {TARGET_RSS_MB:.0f} MB", ok_rss)
    return 0 if ok_ratio and ok_rss else 1


if __name__ == "__main__":
    raise SystemExit(main())
