"""Import jobs run by real Celery worker processes on a Redis broker: a large upload answered 202 is completed by
a worker through its status URL, and a job whose worker is killed mid-way is completed by another, nothing doubled."""

from __future__ import annotations

import pytest
from django.db.models import Count
from rest_framework.test import APIClient

from config.celery import app
from surveillance.api.auth import api_token_create
from surveillance.imports import ehr_import
from surveillance.models import FollowUpVisit, ImportJob, Infusion, Patient
from tests.imports.conftest import cohort_ndjson
from tests.reminders import conftest as workers
from tests.reminders.conftest import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]
NDJSON = "application/fhir+ndjson"
# the reminder tests' real worker processes, on the live test database and Redis
live_db, broker, processes = workers.live_db, workers.broker, workers.processes


@pytest.fixture
def client_a(centre_a, processes):
    """A token client of centre A whose requests enqueue on the test workers' queue."""
    queue, app.conf.task_default_queue = app.conf.task_default_queue, processes.queue
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create('epic-a', [centre_a])[1]}")
    try:
        yield client
    finally:
        app.conf.task_default_queue = queue


def finished(client, url: str):
    response = client.get(url)
    return response if response.status_code != 202 else None


def test_it_answers_202_and_a_worker_completes_the_import_behind_the_status_url(
    processes,
    client_a,
    centre_b,
    settings,
):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 4096}
    text = cohort_ndjson(30)
    processes.worker(CARTWATCH_IMPORT_BATCH_LINES="10")

    response = client_a.generic("POST", "/api/v1/import/fhir", text, content_type=NDJSON)

    assert response.status_code == 202, response.content
    done = wait_until(lambda: finished(client_a, response["Content-Location"]), 90, message="the import job")
    assert done.status_code == 200
    assert done.json() == ehr_import.ndjson_import(text.splitlines(keepends=True), centre_b).as_dict()
    assert ImportJob.objects.get().attempts == 1


def test_it_completes_a_job_whose_worker_was_killed_mid_way_without_doubling_anything(
    processes,
    client_a,
    centre_a,
    centre_b,
):
    text = cohort_ndjson(150)
    env = {"CARTWATCH_IMPORT_BATCH_LINES": "10", "CARTWATCH_IMPORT_LEASE_SECONDS": "4"}
    doomed = processes.worker("doomed", **env)
    response = client_a.generic("POST", "/api/v1/import/fhir", text, content_type=NDJSON, HTTP_PREFER="respond-async")
    assert response.status_code == 202
    job = ImportJob.objects.get()

    wait_until(lambda: ImportJob.objects.filter(pk=job.pk, lines_done__gt=0).exists(), 60, message="a batch")
    processes.kill(doomed)
    job.refresh_from_db()
    assert job.status == "running" and 0 < job.lines_done < job.lines_total == 300

    processes.worker("rescuer", **env)
    processes.beat(CARTWATCH_IMPORT_INTERVAL_SECONDS="1")
    done = wait_until(lambda: finished(client_a, response["Content-Location"]), 120, message="the resumed job")

    report = done.json()
    assert done.status_code == 200 and ImportJob.objects.get().attempts == 2
    assert (report["patients"]["created"], report["infusions"]["created"], report["lines"]) == (150, 150, 300)
    assert Patient.objects.filter(centre=centre_a).count() == 150
    infusions = Infusion.objects.filter(patient__centre=centre_a)
    assert infusions.count() == 150
    assert not infusions.values("patient").annotate(n=Count("pk")).filter(n__gt=1).exists()
    assert FollowUpVisit.objects.filter(infusion__in=infusions).count() == report["visits_planned"]
    assert report == ehr_import.ndjson_import(text.splitlines(keepends=True), centre_b).as_dict()
