"""The upload page: a CSV or FHIR file is previewed by a dry run of the import (counts and refusals, nothing
written), then applied; a large file runs as an import job with a status page; a bad file is a form error."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from surveillance.imports import jobs
from surveillance.models import AuditEntry, ImportJob, Infusion, Patient
from tests.imports.conftest import cohort_ndjson

pytestmark = pytest.mark.django_db
DAY = (dt.date.today() - dt.timedelta(days=20)).isoformat()
CSV = (
    "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"
    f"C-1,Ana,Lima,1970-01-02,f,ana@example.org,,es,Yescarta,{DAY},L1\n"
    f"C-2,Ben,Ng,1980-03-04,m,,,en,carvykti,{DAY},\n"
)
PAGE = "admin:import_upload"


def _upload(client, name: str, content: bytes | str, centre, **extra):
    data = content.encode() if isinstance(content, str) else content
    form = {
        "action": "preview",
        "centre": centre.pk,
        "source_system": "clinic-ehr",
        "file": SimpleUploadedFile(name, data),
    }
    return client.post(reverse(PAGE), {**form, **extra})


def test_it_previews_a_csv_with_its_counts_and_writes_nothing(login, coordinator_a, centre_a):
    client = login(coordinator_a)
    preview = _upload(client, "cohort.csv", CSV, centre_a)
    assert preview.status_code == 200
    report = preview.context["report"]
    assert report["dry_run"] and (report["patients"]["created"], report["infusions"]["created"]) == (2, 2)
    body = preview.content.decode()
    assert 'data-figure="patients-created">2<' in body and 'id="apply-form"' in body
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_applies_the_previewed_file(login, coordinator_a, centre_a):
    client = login(coordinator_a)
    token = _upload(client, "cohort.csv", CSV, centre_a).context["token"]
    applied = client.post(reverse(PAGE), {"action": "apply", "token": token})
    assert applied.status_code == 200 and not applied.context["report"]["dry_run"]
    assert set(Patient.objects.filter(centre=centre_a).values_list("mrn", flat=True)) == {"C-1", "C-2"}
    assert Infusion.objects.filter(patient__centre=centre_a).count() == 2
    entry = AuditEntry.objects.get(action="import", object_type="upload", actor=coordinator_a)
    assert sorted(entry.changes["patient_ids"]) == sorted(Patient.objects.values_list("pk", flat=True))
    # the held file was dropped: applying again imports nothing twice
    again = client.post(reverse(PAGE), {"action": "apply", "token": token})
    assert again.status_code == 302 and Patient.objects.count() == 2


def test_it_lists_the_refusals_of_a_file_refused_whole_and_writes_nothing(login, coordinator_a, centre_a):
    bad = CSV + "C-3,Cy,Do,1990-01-01,x,,,en,aspirin,2031-01-01,\n"
    preview = _upload(login(coordinator_a), "cohort.csv", bad, centre_a)
    assert preview.status_code == 200 and preview.context["refusals"]
    body = preview.content.decode()
    assert 'id="import-refused"' in body and "line 4" in body and 'id="apply-form"' not in body
    assert not Patient.objects.exists()


def test_it_counts_the_refused_lines_of_an_ndjson_export(login, coordinator_a, centre_a):
    ndjson = cohort_ndjson(2) + '{"resourceType": "Patient", "id": "bad id!"}\n'
    preview = _upload(login(coordinator_a), "Patient.ndjson", ndjson, centre_a)
    report = preview.context["report"]
    assert report["patients"]["created"] == 2 and report["error_count"] == 1
    assert "line 5" in preview.content.decode()
    assert not Patient.objects.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("cohort.csv", b"", "The submitted file is empty."),
        ("scan.pdf", b"%PDF-1.7 ...", "Choose a CSV (.csv) or FHIR file"),
        ("cohort.csv", b"\x00\x01\x02binary", "This is not a text file"),
        ("bundle.json", b"   \n  ", "The file is empty."),
    ],
)
def test_it_answers_a_bad_file_with_a_form_error(login, coordinator_a, centre_a, name, content, message):
    response = _upload(login(coordinator_a), name, content, centre_a)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors["file"])
    assert not Patient.objects.exists()


def test_it_refuses_another_centre_and_the_auditor(login, coordinator_a, centre_b, auditor):
    response = _upload(login(coordinator_a), "cohort.csv", CSV, centre_b)
    assert response.status_code == 400 and "centre" in response.context["form"].errors
    assert login(auditor).get(reverse(PAGE)).status_code == 403


def test_it_runs_a_large_file_as_a_job_with_a_status_page_then_applies_it(login, coordinator_a, centre_a, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 64}
    client = login(coordinator_a)
    started = _upload(client, "cohort.csv", CSV, centre_a)
    preview_job = ImportJob.objects.get()
    assert started.status_code == 302 and started["Location"] == reverse("admin:import_job", args=[preview_job.pk])
    assert preview_job.dry_run
    waiting = client.get(started["Location"])
    assert waiting.context["running"] and 'http-equiv="refresh"' in waiting.content.decode()

    jobs.import_jobs_run()
    done = client.get(started["Location"])
    assert done.context["report"]["patients"]["created"] == 2 and not Patient.objects.exists()
    other = client.post(
        started["Location"], {"file": SimpleUploadedFile("other.csv", CSV.replace("Ana", "Ann").encode())}
    )
    assert other.status_code == 400 and "not the file that was previewed" in other.content.decode()

    applied = client.post(started["Location"], {"file": SimpleUploadedFile("cohort.csv", CSV.encode())})
    real_job = ImportJob.objects.exclude(pk=preview_job.pk).get()
    assert applied.status_code == 302 and not real_job.dry_run
    jobs.import_jobs_run()
    assert client.get(applied["Location"]).context["report"]["infusions"]["created"] == 2
    assert Patient.objects.filter(centre=centre_a).count() == 2
