"""Import jobs run by the worker's functions in-process: the same report as the synchronous import, one claim per
job, and a job whose worker died completed by the next run with nothing applied twice."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Count
from django.utils import timezone

from surveillance.imports import batching, ehr_import, jobs
from surveillance.models import AuditEntry, FollowUpVisit, ImportJob, ImportJobStatus, Infusion, Patient
from tests.imports.conftest import cohort_ndjson

pytestmark = pytest.mark.django_db
SMALL_BATCHES = {"IMPORT_BATCH_LINES": 6}


@pytest.fixture
def small_batches(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, **SMALL_BATCHES}


def ndjson_job(centre, text: str, **fields) -> ImportJob:
    return jobs.import_job_create(
        centre,
        format="ndjson",
        payload=text.encode(),
        source_system=fields.pop("source_system", "ehr"),
        dry_run=fields.pop("dry_run", False),
        requested_by="token:epic-a",
    )


def sync_report(centre, text: str) -> dict:
    return ehr_import.ndjson_import(text.splitlines(keepends=True), centre).as_dict()


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing in the import catches it, its open transaction is rolled back."""


def test_it_finishes_an_ndjson_job_with_the_report_of_the_synchronous_import(centre_a, centre_b, small_batches):
    text = cohort_ndjson(10)
    job = ndjson_job(centre_a, text)

    assert jobs.import_jobs_run().as_dict() == {"reclaimed": 0, "done": 1, "failed": 0, "lost": 0}

    job.refresh_from_db()
    assert (job.status, job.result_status, job.lines_done, job.lines_total) == ("done", 200, 20, 20)
    assert job.result == sync_report(centre_b, text)
    assert job.result["patients"]["created"] == 10 and bytes(job.payload) == b""


def test_it_completes_a_job_whose_worker_died_without_applying_anything_twice(
    centre_a, centre_b, small_batches, monkeypatch
):
    text = cohort_ndjson(12)
    job = ndjson_job(centre_a, text)
    applied = []
    real_apply = batching.record_apply

    def dies_in_the_third_batch(item, ctx, siblings=()):
        applied.append(item)
        if len(applied) == 15:  # batches hold 6 lines: lines 13 to 18 are in flight
            raise WorkerKilled
        return real_apply(item, ctx, siblings)

    monkeypatch.setattr(batching, "record_apply", dies_in_the_third_batch)
    with pytest.raises(WorkerKilled):
        jobs.import_jobs_run()
    monkeypatch.setattr(batching, "record_apply", real_apply)

    job.refresh_from_db()
    assert (job.status, job.lines_done, job.attempts) == ("running", 12, 1)
    assert Patient.objects.filter(centre=centre_a).count() == 6  # two batches committed, the third rolled back
    assert job.progress["patients_created"] == 6

    assert jobs.import_jobs_run().done == 0  # its lease still holds: nobody else may take it
    later = timezone.now() + dt.timedelta(seconds=settings_lease() + 1)
    assert jobs.import_job_reclaim_expired(now=later) == 1
    assert jobs.import_jobs_run().as_dict() == {"reclaimed": 0, "done": 1, "failed": 0, "lost": 0}

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 2)
    assert job.result == sync_report(centre_b, text)
    patients = Patient.objects.filter(centre=centre_a)
    assert patients.count() == 12
    assert set(Infusion.objects.filter(patient__centre=centre_a).values_list("patient", flat=True)) == set(
        patients.values_list("pk", flat=True)
    )
    assert not Infusion.objects.values("patient").annotate(n=Count("pk")).filter(n__gt=1).exists()
    visits = FollowUpVisit.objects.filter(infusion__patient__centre=centre_a).count()
    assert visits == FollowUpVisit.objects.filter(infusion__patient__centre=centre_b).count()
    assert AuditEntry.objects.filter(action="plan", actor_label="token:epic-a").count() == 12


def settings_lease() -> int:
    from django.conf import settings

    return settings.CARTWATCH["IMPORT_LEASE_SECONDS"]


def test_it_lets_one_worker_claim_a_job(centre_a):
    job = ndjson_job(centre_a, cohort_ndjson(1))
    first = jobs.import_job_claim("worker-1")
    assert first is not None and first.pk == job.pk and first.claimed_by == "worker-1"
    assert jobs.import_job_claim("worker-2") is None


def test_it_rolls_back_the_batch_of_a_worker_whose_claim_was_taken_over(centre_a, small_batches):
    job = ndjson_job(centre_a, cohort_ndjson(3))
    stale = jobs.import_job_claim("worker-1")
    assert jobs.import_job_reclaim_expired(now=timezone.now() + dt.timedelta(seconds=settings_lease() + 1)) == 1
    assert jobs.import_job_claim("worker-2") is not None

    with pytest.raises(jobs.LeaseLost):
        jobs.import_job_run(stale, "worker-1")

    assert not Patient.objects.filter(centre=centre_a).exists()
    job.refresh_from_db()
    assert (job.status, job.claimed_by, job.lines_done) == ("running", "worker-2", 0)


def test_it_records_the_outcome_of_a_refused_bundle_and_saves_nothing(centre_a):
    job = jobs.import_job_create(
        centre_a,
        format="bundle",
        payload=b'{"resourceType": "Bundle", "type": "document", "entry": []}',
        source_system="ehr",
        dry_run=False,
        requested_by="token:epic-a",
    )
    assert jobs.import_jobs_run().failed == 1
    job.refresh_from_db()
    assert (job.status, job.result_status, job.result["resourceType"]) == ("failed", 400, "OperationOutcome")
    assert job.result["issue"][0]["expression"] == ["Bundle.type"]


def test_it_fails_a_job_that_never_finishes_saying_what_was_imported(centre_a, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_MAX_ATTEMPTS": 2}
    job = ndjson_job(centre_a, cohort_ndjson(1))
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJobStatus.RUNNING, attempts=2, lines_done=1, lease_expires_at=timezone.now()
    )

    assert jobs.import_job_reclaim_expired(now=timezone.now() + dt.timedelta(seconds=1)) == 0

    job.refresh_from_db()
    assert (job.status, job.result_status) == ("failed", 500)
    assert job.result["issue"][0]["diagnostics"] == (
        "the import stopped 2 times without finishing; lines 1 to 1 were imported"
    )


def test_it_reads_prefer_respond_async():
    assert jobs.prefers_async("respond-async")
    assert jobs.prefers_async("return=minimal, Respond-Async; wait=10")
    assert not jobs.prefers_async("") and not jobs.prefers_async("return=representation")


def test_it_puts_a_job_that_raised_back_in_the_queue_and_fails_it_at_the_last_attempt(
    centre_a, settings, monkeypatch, caplog
):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_MAX_ATTEMPTS": 2}
    job = ndjson_job(centre_a, cohort_ndjson(1))

    def broken(*args, **kwargs):
        raise RuntimeError("Key (mrn)=(PAT00000) already exists")

    monkeypatch.setattr(ehr_import, "ndjson_import", broken)

    assert jobs.import_jobs_run().failed == 0
    job.refresh_from_db()
    assert (job.status, job.attempts, job.claimed_by) == ("queued", 1, "")
    assert jobs.import_jobs_run().failed == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.result_status) == ("failed", 2, 500)
    assert "PAT00000" not in caplog.text and "RuntimeError" in caplog.text


def test_it_reads_a_stored_upload_a_chunk_at_a_time_to_the_same_lines(centre_a, settings):
    """A worker holds one chunk of the upload, never the whole of it; chunk ends fall inside lines, and the last
    line may have no line end."""
    text = cohort_ndjson(5).rstrip("\n") + "\r\n" + '{"resourceType": "Patient", "id": "é"}'
    job = ndjson_job(centre_a, text)
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_READ_CHUNK_BYTES": 7}
    lines = text.encode().splitlines(keepends=True)

    assert list(jobs.payload_lines(job.pk)) == lines
    assert list(jobs.payload_lines(job.pk, start=4)) == lines[4:]


def test_it_does_not_load_the_upload_with_the_claimed_job(centre_a):
    ndjson_job(centre_a, cohort_ndjson(3))

    job = jobs.import_job_claim("worker-a")

    assert "payload" in job.get_deferred_fields()
