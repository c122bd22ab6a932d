"""A full export from each of two EHRs that reuse the same resource ids, for different people: imported through
the admin's upload page and through two EHR connections' pulls, each id yields a patient per EHR, never one merged
patient, and each infusion stays with its own EHR's patient. The one record whose identifier matches a patient of
the other EHR while its birth date differs is refused and waits on the identity review worklist."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from surveillance.imports.pull import runs
from surveillance.models import IdentityReview, IdentityReviewStatus, Infusion, Patient
from tests.imports.bulk_server import BulkServer, export_files

pytestmark = pytest.mark.django_db


def other_ehrs_export(files: dict[str, bytes]) -> tuple[dict[str, bytes], str]:
    """The second EHR's export: the same files and resource ids, but every Patient another person (other
    identifiers, name and birth date), except one infused patient who keeps the first EHR's identifiers with
    another birth date. Returns the files and that patient's id."""
    patients = [json.loads(line) for line in files["Patient.000.ndjson"].splitlines()]
    conflict = car_t_subjects(files)[0]
    for patient in patients:
        born = dt.date.fromisoformat(patient["birthDate"])
        patient["birthDate"] = born.replace(year=born.year - 1).isoformat()
        if patient["id"] != conflict:
            patient["identifier"] = [
                {**identifier, "value": f"B-{identifier['value']}"} for identifier in patient["identifier"]
            ]
            patient["name"] = [{**name, "family": f"{name.get('family', '')}-Other"} for name in patient["name"]]
    lines = "".join(json.dumps(patient) + "\n" for patient in patients).encode()
    return {**files, "Patient.000.ndjson": lines}, conflict


def car_t_subjects(files: dict[str, bytes]) -> list[str]:
    """The ids of the patients a CAR-T infusion of the export (HCPCS Q2041) refers to, in the file's order."""
    procedures = [json.loads(line) for line in files["Procedure.000.ndjson"].splitlines()]
    return [
        p["subject"]["reference"].removeprefix("Patient/")
        for p in procedures
        if any(coding.get("code") == "Q2041" for coding in p["code"]["coding"])
    ]


def export_as_one_file(files: dict[str, bytes]) -> bytes:
    """The export's files as one NDJSON upload, Patients first."""
    return b"".join(files[name] for name in sorted(files, key=lambda name: not name.startswith("Patient")))


def assert_two_patients_per_id_and_one_review(first: str, second: str, files: dict[str, bytes], conflict: str) -> None:
    stored = {(p.source_system, p.source_id): p for p in Patient.objects.all()}
    exported = [json.loads(line) for line in files["Patient.000.ndjson"].splitlines()]
    ids = {p["id"] for p in exported}
    assert {key for key in stored if key[0] == first} == {(first, pid) for pid in ids}
    assert {key for key in stored if key[0] == second} == {(second, pid) for pid in ids - {conflict}}
    for resource in exported:  # the first EHR's patients kept their own details: nothing of the second was merged
        patient = stored[(first, resource["id"])]
        assert (patient.family_name, patient.birth_date.isoformat()) == (
            resource["name"][0]["family"],
            resource["birthDate"],
        )
    infused = car_t_subjects(files)
    expected = [(source, pid) for source in (first, second) for pid in infused if (source, pid) != (second, conflict)]
    infusions = Infusion.objects.select_related("patient")
    assert sorted((i.source_system, i.patient.source_system, i.patient.source_id) for i in infusions) == sorted(
        (source, source, pid) for source, pid in expected
    )  # each infusion on its own EHR's patient, the refused patient's not imported
    review = IdentityReview.objects.get()
    assert (review.source_system, review.source_id, review.status) == (second, conflict, IdentityReviewStatus.OPEN)
    assert review.patient == stored[(first, conflict)] and "birth date" in review.reason


def upload(client, centre, payload: bytes, source_system: str) -> dict:
    """Preview, then apply, the export through the upload page; returns the applied report."""
    form = {"action": "preview", "centre": centre.pk, "source_system": source_system}
    preview = client.post(
        reverse("admin:import_upload"), {**form, "file": SimpleUploadedFile("export.ndjson", payload)}
    )
    assert preview.status_code == 200 and preview.context.get("token"), preview.context.get("refusals")
    applied = client.post(reverse("admin:import_upload"), {"action": "apply", "token": preview.context["token"]})
    assert applied.status_code == 200
    return applied.context["report"]


def test_it_keeps_the_patients_of_two_ehrs_apart_through_the_upload_page(coordinator_a, centre_a, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 50 * 1024 * 1024}  # previewed in the page
    first_files = export_files()
    second_files, conflict = other_ehrs_export(first_files)
    first, second = "https://ehr-a.example.org/fhir", "https://ehr-b.example.org/R4"
    client = Client()
    client.force_login(coordinator_a)

    upload(client, centre_a, export_as_one_file(first_files), first)
    report = upload(client, centre_a, export_as_one_file(second_files), second)

    assert [error["code"] for error in report["errors"]] == ["conflict", "conflict"]  # the patient and its infusion
    assert_two_patients_per_id_and_one_review(first, second, first_files, conflict)
    worklist = client.get(reverse("admin:surveillance_identityreview_changelist"))
    assert f"Identity review {IdentityReview.objects.get().pk}" in worklist.content.decode()


def test_it_keeps_the_patients_of_two_ehrs_apart_through_their_pulls(rsa_pem, pull_settings, make_connection):
    first_files = export_files()
    second_files, conflict = other_ehrs_export(first_files)
    servers = [BulkServer(rsa_pem[0].public_key(), "RS384", files) for files in (first_files, second_files)]
    try:
        first = make_connection(servers[0], name="First EHR").source_system
        assert runs.pulls_run().done == 1
        second = make_connection(servers[1], name="Second EHR").source_system
        assert runs.pulls_run().done == 2  # the first again (nothing new), then the second
    finally:
        for server in servers:
            server.stop()
    assert first != second
    assert_two_patients_per_id_and_one_review(first, second, first_files, conflict)
