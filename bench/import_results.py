"""Import an EHR's results for a followed cohort: Encounters and blood counts that complete visits and fill them.

``BENCH_RESULTS_PATIENTS`` (default 100,000) patients infused over the last three years are imported first (untimed,
as ``import_plan`` does) and the database ``ANALYZE``d, as autovacuum would soon have done: without statistics
PostgreSQL plans the import's per-batch queries on the visits as if the tables were empty, scanning an index over
every patient's visits for each batch of ten patients. On a server with autovacuum off, both imports run with a
stand-in that analyses every 30 s (``autovacuum_stand_in``), as production's autovacuum would. Then a second Bulk
Data export is written: for each of a patient's visits due by today (up to seven), a finished Encounter on the due
date and a blood count of seven Observations (WBC, ANC, lymphocytes, haemoglobin, platelets, MCV, blasts; LOINC,
UCUM units and reference ranges, all normal), so about 50 Observations a patient. It is imported by ``manage.py
import_ehr FILE --centre bench`` in a child process, timed: every result goes through the signal rules and the visit
reconciliation, and lands as a ``VisitResult``.

Baseline, in the same run: the stored result rows ``COPY``-ed into a same-indexed table. Reported: wall time,
Observations/s, the ratio to that COPY, and the child's peak RSS (target < 300 MB: the import streams).
``BENCH_IMPORT_PROFILE=1`` runs the timed import under cProfile and prints the top functions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench._common import (
    autovacuum_stand_in,
    bench_centre,
    copy_baseline,
    print_profile,
    record,
    run_child,
    scratch_database,
    write_bulk_export,
)

VISITS_PER_PATIENT = 7
TARGET_RSS_MB = 300.0
#: (LOINC, unit, value, low, high): a normal blood count, in units the signal rules read.
BLOOD_COUNT = (
    ("6690-2", "10*3/uL", 6.2, 4.0, 11.0),
    ("751-8", "10*3/uL", 3.8, 1.5, 7.5),
    ("731-0", "10*3/uL", 1.9, 1.0, 4.0),
    ("718-7", "g/dL", 13.4, 12.0, 17.0),
    ("777-3", "10*3/uL", 245.0, 150.0, 400.0),
    ("787-2", "fL", 89.0, 80.0, 100.0),
    ("709-8", "%", 0.0, 0.0, 1.0),
)


def write_results_export(path: Path, due_dates: dict[str, list[dt.date]]) -> tuple[int, int]:
    """One Encounter and one blood count per visit due; returns (observations, bytes)."""
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    observations = 0
    with path.open("w", encoding="utf-8") as out:
        for patient_id, days in due_dates.items():
            subject = {"reference": f"Patient/{patient_id}"}
            for n, day in enumerate(days):
                when = f"{day.isoformat()}T09:30:00Z"
                encounter = {
                    "resourceType": "Encounter",
                    "id": f"{patient_id}-enc-{n}",
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": subject,
                    "period": {"start": when, "end": when},
                }
                out.write(dumps(encounter) + "\n")
                for loinc, unit, value, low, high in BLOOD_COUNT:
                    observation = {
                        "resourceType": "Observation",
                        "id": f"{patient_id}-obs-{n}-{loinc}",
                        "status": "final",
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": "laboratory",
                                    }
                                ]
                            }
                        ],
                        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                        "subject": subject,
                        "encounter": {"reference": f"Encounter/{patient_id}-enc-{n}"},
                        "effectiveDateTime": when,
                        "valueQuantity": {
                            "value": value,
                            "unit": unit,
                            "system": "http://unitsofmeasure.org",
                            "code": unit,
                        },
                        "referenceRange": [
                            {"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}
                        ],
                    }
                    out.write(dumps(observation) + "\n")
                    observations += 1
    return observations, path.stat().st_size


def main() -> int:
    n = int(os.environ.get("BENCH_RESULTS_PATIENTS", "100000"))
    with scratch_database("results") as db_url:
        from django.db import connection

        from surveillance.models import FollowUpVisit, Signal, VisitResult, VisitStatus

        if connection.vendor != "postgresql":
            print("import_results: skipped (needs PostgreSQL: set DATABASE_URL)")
            record("import results", "skipped (no PostgreSQL)", "-", "-", "-", None)
            return 0
        index_rows = bench_centre()
        today = dt.date.today()
        env = {**os.environ, "DATABASE_URL": db_url}
        with tempfile.TemporaryDirectory() as folder:
            cohort = Path(folder) / "cohort.ndjson"
            write_bulk_export(cohort, n, index_rows, first=today - dt.timedelta(days=3 * 365), last=today)
            connection.close()
            with autovacuum_stand_in(db_url):
                setup = run_child([sys.executable, "manage.py", "import_ehr", str(cohort), "--centre", "bench"], env)
            if setup.returncode != 0:
                print(setup.stdout[-3000:], setup.stderr[-3000:], sep="\n")
                record("import results", "FAILED (cohort)", "-", "-", "-", False)
                return 1
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
            due_dates: dict[str, list[dt.date]] = defaultdict(list)
            rows = (
                FollowUpVisit.objects.filter(due_date__lte=today)
                .exclude(status=VisitStatus.CANCELLED)
                .order_by("infusion__patient__source_id", "due_date")
                .values_list("infusion__patient__source_id", "due_date")
            )
            for patient_id, day in rows.iterator(chunk_size=10_000):
                if len(due_dates[patient_id]) < VISITS_PER_PATIENT:
                    due_dates[patient_id].append(day)
            export = Path(folder) / "results.ndjson"
            t0 = time.perf_counter()
            observations, size = write_results_export(export, due_dates)
            print(
                f"results export: {observations} Observations and their Encounters for {len(due_dates)} patients, "
                f"{size / 1e6:.1f} MB, written in {time.perf_counter() - t0:.1f} s"
            )
            connection.close()
            prof = Path(folder) / "results.prof"
            profile = os.environ.get("BENCH_IMPORT_PROFILE") == "1"
            prefix = [sys.executable, "-m", "cProfile", "-o", str(prof)] if profile else [sys.executable]
            with autovacuum_stand_in(db_url):
                child = run_child([*prefix, "manage.py", "import_ehr", str(export), "--centre", "bench"], env)
            if child.returncode != 0:
                print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
                record("import results", "FAILED", "-", "-", "-", False)
                return 1
            if profile:
                print_profile(prof)
        report = json.loads(child.stdout)
        stored, signals = VisitResult.objects.count(), Signal.objects.count()
        completed = FollowUpVisit.objects.filter(status=VisitStatus.COMPLETED).count()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        copied, raw = copy_baseline(connection, VisitResult)
    ratio = child.seconds / raw if raw else float("inf")
    print(f"import_ehr of {observations} Observations (one run, Django start-up included): {child.seconds:.1f} s")
    print(f"  {observations / child.seconds:8.0f} Observations/s; {stored} results stored, {completed} visits done")
    print(f"  signals raised: {signals} (a normal cohort raises none); peak RSS {child.max_rss_mb:.0f} MB")
    print(f"  report: {json.dumps({k: v for k, v in report.items() if isinstance(v, int)})}")
    print(f"raw COPY of the same {copied} result rows into a same-indexed table: {raw:.2f} s")
    print(f"import / COPY: {ratio:.1f}x")
    ok_rss = child.max_rss_mb < TARGET_RSS_MB
    record(
        f"import results {len(due_dates)} patients (1 run)",
        f"{child.seconds:.1f} s; {observations / child.seconds:.0f} obs/s; {stored} results",
        f"COPY {copied} rows {raw:.1f} s",
        f"{ratio:.1f}x",
        "reported",
        stored > 0 and signals == 0,
    )
    record("import results peak RSS", f"{child.max_rss_mb:.0f} MB", "-", "-", f"< {TARGET_RSS_MB:.0f} MB", ok_rss)
    return 0 if ok_rss and stored > 0 and signals == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
