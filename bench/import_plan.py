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
One run (it takes minutes); ``BENCH_IMPORT_PROFILE=1`` runs the child under cProfile, timed by its own CPU time
(waits on the database and on other work left out), and prints the top functions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._common import (
    NewBackendsCpu,
    autovacuum_stand_in,
    bench_centre,
    copy_baseline,
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


def main() -> int:
    n = int(os.environ.get("BENCH_IMPORT_PATIENTS", "100000"))
    target = target_ratio(n)
    profile = os.environ.get("BENCH_IMPORT_PROFILE") == "1"
    with scratch_database("import") as db_url:
        from django.db import connection

        from surveillance.models import FollowUpVisit, Infusion, Patient, Reminder

        if connection.vendor != "postgresql":
            print("import_plan: skipped (needs PostgreSQL: set DATABASE_URL)")
            record("import+plan", "skipped (no PostgreSQL)", "-", "-", "-", None)
            return 0
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
            if child.returncode != 0:
                print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
                record("import+plan", "FAILED", "-", "-", f"<= {target:.0f}x COPY", False)
                return 1
            if profile:
                print_profile(prof)
        report = json.loads(child.stdout)
        patients, infusions = Patient.objects.count(), Infusion.objects.count()
        visits, reminders = FollowUpVisit.objects.count(), Reminder.objects.count()
        assert report["error_count"] == 0 and patients == n and infusions == n, (report["errors"][:3], patients)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        from surveillance.models import FollowUpVisit

        copied, raw = copy_baseline(connection, FollowUpVisit)
    ratio = child.seconds / raw
    print(f"import_ehr of {n} patients (one run, Django start-up included): {child.seconds:.1f} s")
    print(f"  {n / child.seconds:8.0f} patients/s, {visits / child.seconds:8.0f} visit rows/s")
    print(
        f"  {visits} visits ({report['visits_planned']} planned), {reminders} reminders; "
        f"peak RSS {child.max_rss_mb:.0f} MB"
    )
    print(
        f"  CPU per patient: import_ehr {1000 * child.cpu_seconds / n:.2f} ms ({child.cpu_seconds:.1f} s), "
        f"its PostgreSQL backends {1000 * backends.seconds / n:.2f} ms ({backends.seconds:.1f} s); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"raw COPY of the same {copied} visit rows into a same-indexed table: {raw:.2f} s ({copied / raw:.0f} rows/s)"
    )
    print(f"import / COPY: {ratio:.1f}x (target <= {target:.0f}x)")
    ok_ratio, ok_rss = ratio <= target, child.max_rss_mb < TARGET_RSS_MB
    record(
        f"import+plan {n} patients (1 run)",
        f"{child.seconds:.1f} s; {n / child.seconds:.0f} pat/s; {visits / child.seconds:.0f} visits/s",
        f"COPY {copied} rows {raw:.1f} s",
        f"{ratio:.1f}x",
        f"<= {target:.0f}x",
        ok_ratio,
    )
    record("import+plan peak RSS", f"{child.max_rss_mb:.0f} MB", "-", "-", f"< {TARGET_RSS_MB:.0f} MB", ok_rss)
    return 0 if ok_ratio and ok_rss else 1


if __name__ == "__main__":
    raise SystemExit(main())
