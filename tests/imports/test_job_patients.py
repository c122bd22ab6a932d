"""An import job records the patients it touched as rows of their own, batch by batch: its progress stays the
same size however large the upload, and a dry run records only patients that exist."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from surveillance.imports import jobs
from surveillance.models import ImportJob, ImportJobPatient, Patient
from tests.imports.conftest import cohort_ndjson
from tests.imports.test_jobs import ndjson_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_batches(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_BATCH_LINES": 6}


def test_it_records_each_patient_of_each_batch_once(centre_a, small_batches):
    job = ndjson_job(centre_a, cohort_ndjson(9))
    sizes = []
    real_progress = jobs._progress

    def watched(claim):
        report = real_progress(claim)
        sizes.append(len(str(claim.values_list("progress", flat=True).first())))
        return report

    jobs._progress = watched
    try:
        assert jobs.import_jobs_run().done == 1
    finally:
        jobs._progress = real_progress
    job.refresh_from_db()
    patients = set(Patient.objects.filter(centre=centre_a).values_list("pk", flat=True))
    assert len(patients) == 9
    assert jobs.job_patient_ids(job) == sorted(patients)
    assert "patient_ids" not in job.progress
    assert max(sizes) - min(sizes[1:]) < 20  # the progress read by each batch does not grow with the patients


def test_it_records_the_existing_patients_of_a_dry_run_only(centre_a):
    text = cohort_ndjson(3)
    assert jobs.import_jobs_run().done == 0
    first = ndjson_job(centre_a, text)
    assert jobs.import_jobs_run().done == 1  # the three patients now exist
    dry = ndjson_job(centre_a, text + cohort_ndjson(2, prefix="new"), dry_run=True)
    assert jobs.import_jobs_run().done == 1
    assert jobs.job_patient_ids(dry) == jobs.job_patient_ids(first)  # the two new ones were rolled back


def test_it_moves_the_lists_kept_before_into_rows(centre_a, make_patient):
    kept, gone = make_patient(centre_a), make_patient(centre_a)
    job = ndjson_job(centre_a, cohort_ndjson(1))
    ImportJob.objects.filter(pk=job.pk).update(progress={"patients_created": 2, "patient_ids": [kept.pk, gone.pk]})
    gone.delete()
    migration = importlib.import_module("surveillance.migrations.0019_import_job_patients")
    migration.patient_ids_to_rows(apps, None)
    job.refresh_from_db()
    assert job.progress == {"patients_created": 2}
    assert list(ImportJobPatient.objects.filter(job=job).values_list("patient_id", flat=True)) == [kept.pk]
