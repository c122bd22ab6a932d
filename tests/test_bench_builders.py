"""The benchmarks that build their cohorts with SQL keep up with the schema: each runs end to end at a tiny size.

They write rows column by column, so a new NOT NULL column breaks them without any other test noticing; this runs
them as `make bench` does (a scratch database of their own, a child process), only small.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the SQL builders are PostgreSQL's"
)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("sweep", {"BENCH_SWEEP_VISITS": "3000"}),
        ("admin_pages", {"BENCH_ADMIN_PATIENTS": "60"}),
        ("dispatch", {"BENCH_MESSAGES": "40", "BENCH_DISPATCH_RUNS": "1", "BENCH_PENDING_ROWS": "2000"}),
        ("api_import_jobs", {"BENCH_JOB_UPLOADS": "2", "BENCH_JOB_PATIENTS": "20", "BENCH_JOB_PART_BYTES": "9000"}),
        (
            "api_import_jobs",
            {"BENCH_JOB_UPLOADS": "1", "BENCH_JOB_PATIENTS": "30", "BENCH_JOB_BASELINE_PATIENTS": "10"},
        ),
        ("visit_growth", {"BENCH_GROWTH_PATIENTS": "20", "BENCH_GROWTH_CHUNKS": "2"}),
        (
            "dispatch_celery",
            {"BENCH_CELERY_MESSAGES": "60", "BENCH_CELERY_RUNS": "1", "BENCH_CELERY_CPU_MESSAGES": "20"},
        ),
    ],
)
def test_it_builds_and_measures_at_a_tiny_size(name, size):
    result = subprocess.run(
        [sys.executable, "-m", "bench", name],
        cwd=REPO,
        env={**os.environ, **size},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    # a missed speed target is not this test's business (a loaded machine); a build or run that breaks is
    assert "Traceback" not in output and "ERROR" not in result.stdout and "FAILED" not in result.stdout, output[-3000:]
    assert f"== bench.{name}" in result.stdout and "| met? |" in result.stdout
