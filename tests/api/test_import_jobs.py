"""Large imports through the API become jobs: 202 and a status URL that answers progress, then the same report the
synchronous import gives; small ones stay synchronous; only the job's centre may see it."""

from __future__ import annotations

import pytest

from surveillance.imports import jobs
from surveillance.models import AuditEntry, ImportJob, Patient
from tests.api.test_import_fhir import FHIR_JSON, NDJSON, car_t_bundle, post_bundle, post_ndjson
from tests.imports.conftest import cohort_ndjson

PROGRESS_KEYS = {
    "id", "status", "format", "dry_run", "lines_done", "lines_total", "entries_done", "attempts", "created_at",
}  # fmt: skip


@pytest.fixture
def sync_limit(settings):
    """Uploads over 2 kB become jobs."""
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 2048, "IMPORT_BATCH_LINES": 4}


def test_it_answers_a_large_import_202_and_then_the_report_of_the_synchronous_import(
    api_a, api_b, centre_a, sync_limit, settings
):
    text = cohort_ndjson(20)
    response = post_ndjson(api_a, text)

    assert response.status_code == 202, response.content
    url = response["Content-Location"]
    assert response["Location"] == url and url.startswith("http://testserver/api/v1/import/jobs/")
    assert set(response.json()) == PROGRESS_KEYS and response["X-Progress"] == "queued"
    assert not Patient.objects.filter(centre=centre_a).exists()  # nothing imported within the request
    waiting = api_a.get(url)
    assert waiting.status_code == 202 and waiting.json()["lines_total"] == 40

    jobs.import_jobs_run()

    done = api_a.get(url)
    assert done.status_code == 200
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 10**9}  # the same upload, synchronously
    assert done.json() == post_ndjson(api_b, text).json()
    assert done.json()["patients"]["created"] == 20


def test_it_shows_the_lines_done_while_a_job_runs(api_a, centre_a, sync_limit):
    response = post_ndjson(api_a, cohort_ndjson(20))
    job = ImportJob.objects.get()
    ImportJob.objects.filter(pk=job.pk).update(status="running", lines_done=12, lease_expires_at=job.created_at)
    ImportJob.objects.filter(pk=job.pk).update(progress={"patients_created": 6, "infusions_created": 6})

    status = api_a.get(response["Content-Location"])

    assert status.status_code == 202 and status["X-Progress"] == "12 of 40 lines"
    assert status.json()["entries_done"] == {"patients": 6, "infusions": 6}
    assert status.json()["status"] == "running" and status["Retry-After"] == "5"


def test_it_imports_a_small_upload_as_a_job_when_asked_to_respond_async(api_a, centre_a):
    response = api_a.generic(
        "POST", "/api/v1/import/fhir", cohort_ndjson(1), content_type=NDJSON, HTTP_PREFER="respond-async"
    )
    assert response.status_code == 202
    jobs.import_jobs_run()
    assert api_a.get(response["Content-Location"]).json()["patients"]["created"] == 1


def test_it_keeps_small_imports_synchronous(api_a, centre_a):
    response = post_bundle(api_a, car_t_bundle())
    assert response.status_code == 200 and response.json()["format"] == "bundle"
    assert not ImportJob.objects.exists()


def test_it_answers_the_outcome_of_a_refused_job_as_the_synchronous_import(api_a, sync_limit):
    bundle = car_t_bundle()
    bundle["entry"][1]["resource"]["performedDateTime"] = "2003-01-01"  # before any CAR-T therapy
    bundle["entry"].extend({"resource": {"resourceType": "Basic", "id": f"b{n}"}} for n in range(40))
    response = post_bundle(api_a, bundle)
    assert response.status_code == 202

    jobs.import_jobs_run()

    status = api_a.get(response["Content-Location"])
    assert status.status_code == 400 and status["Content-Type"] == FHIR_JSON
    assert status.json()["resourceType"] == "OperationOutcome" and not Patient.objects.exists()


def test_it_imports_a_large_csv_as_a_job(api_a, sync_limit):
    rows = "".join(f"A{n:05d},Sam,Doe,1960-02-03,F,,,en,yescarta,2026-01-10,\n" for n in range(60))
    header = (
        "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"
    )
    response = api_a.generic("POST", "/api/v1/import/csv", header + rows, content_type="text/csv")
    assert response.status_code == 202

    jobs.import_jobs_run()

    report = api_a.get(response["Content-Location"]).json()
    assert (report["format"], report["patients"]["created"], report["infusions"]["created"]) == ("csv", 60, 60)


def test_it_hides_a_job_from_another_centre(api_a, api_b, readonly_a, sync_limit):
    url = post_ndjson(api_a, cohort_ndjson(20))["Content-Location"]
    foreign = api_b.get(url)
    assert foreign.status_code == 404 and "Doe" not in foreign.content.decode()
    assert readonly_a.get(url).status_code == 202
    assert api_a.get("/api/v1/import/jobs/999999").status_code == 404


def test_it_audits_the_fetch_of_a_report_with_every_patient_it_touched(api_a, centre_a, sync_limit):
    url = post_ndjson(api_a, cohort_ndjson(12))["Content-Location"]
    jobs.import_jobs_run()  # six batches of two patients and their infusions, each recording its patients

    assert api_a.get(url).status_code == 200
    entry = AuditEntry.objects.filter(action="api_get").latest("pk")
    assert entry.changes["patient_ids"] == sorted(Patient.objects.filter(centre=centre_a).values_list("pk", flat=True))
    assert len(entry.changes["patient_ids"]) == 12
