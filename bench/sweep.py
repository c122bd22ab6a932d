"""The daily missed-visit sweep over a large visit table, beside the single UPDATE that marks the same rows.

A cohort is built with SQL (``INSERT ... SELECT generate_series``) in a scratch database: ``BENCH_SWEEP_VISITS``
(default 3,000,000) visits, 30 per patient (every six months for fifteen years, windows of +/- 30 days) over
infusions from 2017 to today, in three centres (New York, Paris, Tokyo). Visits whose window closed before the
backlog (``BENCH_SWEEP_BACKLOG_DAYS``, default 7: a week of closed windows not yet swept, where a daily run
normally sees one day) are history: completed, or missed for about one in eight (the
patients' lost-to-follow-up ladder stages are set from that history). In the backlog, about
``BENCH_SWEEP_UNRECORDED`` (default 0.3) of the visits were never recorded and are still scheduled: those the sweep
must mark missed. Future visits are scheduled; those already in the reminder look-ahead have their reminders
planned, except the day's newcomers, which the sweep's outbox top-up plans.

The real ``surveillance.reminders.sweep.daily_sweep`` runs in a child process (wall time of the sweep itself, and the
child's peak RSS); target under 30 s. Baseline: one ``UPDATE`` marking the same rows missed (in a transaction
rolled back, median of 3), found through the same index of open visits' due dates as the sweep. The sweep changes
the data, so it runs once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

from bench._common import median, record, run_child, scratch_database

TARGET_SECONDS = 30.0
PER_PATIENT = 30

CHILD = """
import json, time, django
django.setup()
from surveillance.reminders.sweep import daily_sweep
import os, cProfile, pstats
profiler = cProfile.Profile() if os.environ.get("BENCH_SWEEP_PROFILE") == "1" else None
t0 = time.perf_counter()
if profiler:
    profiler.enable()
result = daily_sweep()
if profiler:
    profiler.disable()
    import sys
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
print(json.dumps({"seconds": time.perf_counter() - t0, **result.as_dict()}))
"""


def build(visits: int, backlog_days: int, unrecorded: float) -> tuple[dict, int]:
    """Build the cohort; returns visits by status and how many patients are off track on the ladder."""
    from django.conf import settings
    from django.db import connection

    from surveillance.models import CarTProduct, Protocol, TreatmentCentre
    from surveillance.seeds.loader import seeds_load

    seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    protocol = Protocol.objects.current("standard")
    rule = protocol.rules.order_by("position").last()
    product = CarTProduct.objects.order_by("pk").first()
    centres = [
        TreatmentCentre.objects.create(code=code, name=code, time_zone=tz, care_team_email=f"{code}@example.org").pk
        for code, tz in (("ny", "America/New_York"), ("paris", "Europe/Paris"), ("tokyo", "Asia/Tokyo"))
    ]
    patients = visits // PER_PATIENT
    today = dt.date.today()
    grace = settings.CARTWATCH["MISSED_GRACE_DAYS"]
    lookahead = settings.CARTWATCH["REMINDER_LOOKAHEAD_DAYS"]
    first = dt.date(2017, 1, 1)
    span = (today - first).days
    params = {
        "patients": patients,
        "centres": centres,
        "first": first,
        "span": span,
        "product": product.pk,
        "protocol": protocol.pk,
        "rule": rule.pk,
        "rule_code": rule.code,
        "label": rule.label,
        "kind": rule.kind,
        "per": PER_PATIENT,
        # the sweep marks visits whose window closed more than `grace` days ago
        "history_before": today - dt.timedelta(days=grace + backlog_days),
        "sweep_before": today - dt.timedelta(days=grace),
        "unrecorded": unrecorded,
        "planned_until": today + dt.timedelta(days=lookahead - 1),
    }
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO surveillance_patient (mrn, given_name, family_name, birth_date, sex, email, phone,
                preferred_language, time_zone, contact_consent, status, status_reason, ladder_stage, source_system,
                source_id, created_at, updated_at, centre_id, identifier_system, preferred_channel, sms_consent)
            SELECT 'S' || g, 'Pat', 'Sweep' || g, DATE '1950-01-01' + (g %% 15000), 'female',
                   'p' || g || '@example.org', '', 'en', '', true, 'active', '', 'on_track', '', '', now(), now(),
                   (%(centres)s::bigint[])[1 + g %% 3], '', 'email', false
            FROM generate_series(1, %(patients)s) AS g
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO surveillance_infusion (infusion_date, indication, lot_number, source_system, source_id,
                created_at, updated_at, product_id, patient_id, protocol_id)
            SELECT %(first)s::date + ((p.id * 7919) %% %(span)s)::int, '', '', '', '', now(), now(), %(product)s, p.id,
                   %(protocol)s
            FROM surveillance_patient p
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO surveillance_followupvisit (rule_code, occurrence, label, kind, due_date, window_start,
                window_end, assessments, status, status_changed_at, status_reason, completed_on, results, sequence,
                planner_cancelled, reminders_planned_for, created_at, updated_at, infusion_id, rule_id, booked_for,
                booked_source, completed_source, ehr_completion_undone)
            SELECT %(rule_code)s, k, %(label)s, %(kind)s, d.due, d.due - 30, d.due + 30, '[]', d.status,
                   CASE WHEN d.status = 'scheduled' THEN NULL ELSE now() END,
                   CASE WHEN d.status = 'missed' THEN 'Window closed without a recorded visit' ELSE '' END,
                   CASE WHEN d.status = 'completed' THEN d.due END, '{}', 0, false,
                   CASE WHEN d.status = 'scheduled' AND d.due <= %(planned_until)s THEN 0 END,
                   now(), now(), i.id, %(rule)s, NULL, '', '', ''
            FROM surveillance_infusion i
            CROSS JOIN generate_series(1, %(per)s) AS k
            CROSS JOIN LATERAL (
                SELECT (i.infusion_date + k * 182) AS due,
                       CASE
                         WHEN i.infusion_date + k * 182 + 30 < %(history_before)s THEN
                           CASE WHEN hashint4(i.id::int * 64 + k) %% 8 = 0 THEN 'missed' ELSE 'completed' END
                         WHEN i.infusion_date + k * 182 + 30 < %(sweep_before)s THEN
                           CASE WHEN abs(hashint4(i.id::int * 64 + k + 1)) %% 100 < %(unrecorded)s * 100
                                THEN 'scheduled' ELSE 'completed' END
                         ELSE 'scheduled'
                       END AS status
            ) AS d
            """,
            params,
        )
        # ladder stages from the history: consecutive missed visits since the last completed one
        cursor.execute(
            """
            WITH settled AS (
                SELECT i.patient_id, v.status,
                       row_number() OVER (PARTITION BY i.patient_id ORDER BY v.due_date DESC, v.id DESC) AS rn
                FROM surveillance_followupvisit v JOIN surveillance_infusion i ON i.id = v.infusion_id
                WHERE v.status IN ('completed', 'missed')
            ), runs AS (
                SELECT patient_id, coalesce(min(rn) FILTER (WHERE status = 'completed') - 1, count(*)) AS missed
                FROM settled GROUP BY patient_id
            )
            UPDATE surveillance_patient p
            SET ladder_stage = CASE WHEN r.missed >= 3 THEN 'lost' WHEN r.missed = 2 THEN 'tracing' ELSE 'overdue' END,
                status = CASE WHEN r.missed >= 3 THEN 'lost_to_follow_up' ELSE 'active' END,
                status_date = CASE WHEN r.missed >= 3 THEN current_date END
            FROM runs r WHERE r.patient_id = p.id AND r.missed > 0
            """
        )
        cursor.execute("ANALYZE")
        cursor.execute(
            "SELECT status, count(*) FROM surveillance_followupvisit GROUP BY status ORDER BY status",
        )
        counts = dict(cursor.fetchall())
        cursor.execute("SELECT ladder_stage, count(*) FROM surveillance_patient GROUP BY 1 ORDER BY 1")
        ladder = dict(cursor.fetchall())
    print(f"built {sum(counts.values())} visits for {patients} patients in {time.perf_counter() - t0:.1f} s")
    print(f"  visits by status: {counts}; patients by ladder stage: {ladder}")
    return counts, sum(n for stage, n in ladder.items() if stage != "on_track")


BASELINE = """
UPDATE surveillance_followupvisit v
SET status = 'missed', status_reason = %s, status_changed_at = now(), updated_at = now()
FROM surveillance_infusion i, surveillance_patient p, surveillance_treatmentcentre c
WHERE v.infusion_id = i.id AND i.patient_id = p.id AND p.centre_id = c.id
  AND (CASE WHEN v.status = 'scheduled' THEN v.due_date END) < %s
  AND v.status = 'scheduled' AND v.window_end < %s AND i.superseded_by_id IS NULL
  AND p.status NOT IN ('deceased', 'withdrawn', 'transferred')
  AND v.window_end + %s < (now() AT TIME ZONE c.time_zone)::date
"""


class _Rollback(Exception):
    pass


def baseline_update() -> tuple[int, float]:
    from django.conf import settings
    from django.db import connection, transaction

    from surveillance.reminders.sweep import MISSED_REASON

    timings, count = [], 0
    for _ in range(3):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    t0 = time.perf_counter()
                    grace = settings.CARTWATCH["MISSED_GRACE_DAYS"]
                    bound = dt.date.today() + dt.timedelta(days=1) - dt.timedelta(days=grace)  # as the sweep's
                    cursor.execute(BASELINE, [MISSED_REASON, bound, bound, grace])
                    timings.append(time.perf_counter() - t0)
                    count = cursor.rowcount
                raise _Rollback
        except _Rollback:
            pass
    return count, median(timings)


def main() -> int:
    visits = int(os.environ.get("BENCH_SWEEP_VISITS", "3000000"))
    backlog = int(os.environ.get("BENCH_SWEEP_BACKLOG_DAYS", "7"))
    unrecorded = float(os.environ.get("BENCH_SWEEP_UNRECORDED", "0.3"))
    with scratch_database("sweep") as db_url:
        from django.db import connection

        if connection.vendor != "postgresql":
            print("sweep: skipped (needs PostgreSQL: set DATABASE_URL)")
            record("daily sweep", "skipped (no PostgreSQL)", "-", "-", "-", None)
            return 0
        _, off_track = build(visits, backlog, unrecorded)
        expected, raw = baseline_update()
        print(f"baseline: one UPDATE marks {expected} visits missed in {raw * 1000:.0f} ms (median of 3, rolled back)")
        connection.close()
        child = run_child([sys.executable, "-c", CHILD], {**os.environ, "DATABASE_URL": db_url})
        if child.returncode != 0:
            print(child.stdout[-3000:], child.stderr[-3000:], sep="\n")
            record("daily sweep", "FAILED", "-", "-", f"< {TARGET_SECONDS:.0f} s", False)
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
        if os.environ.get("BENCH_SWEEP_PROFILE") == "1":
            print(child.stderr)
        from surveillance.models import FollowUpVisit

        total = FollowUpVisit.objects.count()
    seconds = result["seconds"]
    print(
        f"daily_sweep over {total} visits (one run): {seconds:.1f} s; {result['missed']} marked missed, "
        f"{result['ladder_changes']} ladder changes, {result['topped_up']} visits' reminders topped up; "
        f"peak RSS {child.max_rss_mb:.0f} MB"
    )
    print(f"  {off_track} patients were already off track; the sweep reads only the overdue visits")
    if result["missed"] != expected:
        print(f"  note: the baseline UPDATE matched {expected} rows, the sweep marked {result['missed']}")
    ok = seconds < TARGET_SECONDS
    record(
        f"daily sweep, {total / 1e6:.1f}M visits (1 run)",
        f"{seconds:.1f} s, {result['missed']} missed; RSS {child.max_rss_mb:.0f} MB",
        f"1 UPDATE {raw * 1000:.0f} ms",
        f"{seconds / raw:.0f}x",
        f"< {TARGET_SECONDS:.0f} s",
        ok,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
