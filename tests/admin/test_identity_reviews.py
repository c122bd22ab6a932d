"""The identity review worklist: a coordinator links, creates or rejects an imported Patient refused for its
identity; each decision is audited, and only the coordinator's centres' reviews are shown."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import AuditEntry, IdentityReview, IdentityReviewStatus, Infusion, Patient
from tests.imports.synthea import car_t_procedure, server_bundle, synthea_patient

A, B = "https://ehr-a.example.org/fhir", "https://ehr-b.example.org/R4"


def their_bundle() -> dict:
    return server_bundle(B, synthea_patient("1", "Jones", "1985-07-08"), car_t_procedure("p9", "1", days_ago=10))


@pytest.fixture
def conflict(centre_a) -> IdentityReview:
    """Server A's patient 1 is stored; server B's patient 1, someone else, was refused."""
    ehr_import.bundle_import(server_bundle(A, synthea_patient("1", "Smith", "1960-01-02"), noise=20), centre_a)
    with pytest.raises(FhirImportError):
        ehr_import.bundle_import(their_bundle(), centre_a)
    return IdentityReview.objects.get()


def decide(client, review, **data):
    return client.post(reverse("admin:surveillance_identityreview_decide", args=[review.pk]), data)


def test_it_lists_open_reviews_of_the_users_centres_only(conflict, login, coordinator_a, physician_b):
    listed = login(coordinator_a).get(reverse("admin:surveillance_identityreview_changelist"))
    assert listed.status_code == 200 and f"Identity review {conflict.pk}" in listed.content.decode()
    page = login(physician_b).get(reverse("admin:surveillance_identityreview_decide", args=[conflict.pk]))
    assert page.status_code == 404


def test_it_links_the_record_so_a_later_import_reaches_the_stored_patient(conflict, login, coordinator_a):
    smith = conflict.patient
    response = decide(login(coordinator_a), conflict, decision=IdentityReviewStatus.LINKED)
    assert response.status_code == 302
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_patient, conflict.resolved_by) == ("linked", smith, coordinator_a)
    assert AuditEntry.objects.filter(action="identity_review", object_id=str(conflict.pk), actor=coordinator_a)
    report = ehr_import.bundle_import(their_bundle(), conflict.centre)
    assert report.patients_unchanged == 1 and report.infusions_created == 1
    smith.refresh_from_db()
    assert (smith.family_name, smith.birth_date) == ("Smith", dt.date(1960, 1, 2))  # the decision keeps them
    assert Infusion.objects.get().patient == smith


def test_it_creates_a_new_patient_under_a_new_mrn(conflict, login, coordinator_a):
    client = login(coordinator_a)
    taken = decide(client, conflict, decision=IdentityReviewStatus.CREATED, mrn=conflict.patient.mrn)
    assert taken.status_code == 400 and "Another patient" in taken.content.decode()
    decide(client, conflict, decision=IdentityReviewStatus.CREATED, mrn="B-1")
    jones = Patient.objects.get(mrn="B-1")
    assert (jones.family_name, jones.birth_date, jones.source_system) == ("Jones", dt.date(1985, 7, 8), B)
    report = ehr_import.bundle_import(their_bundle(), conflict.centre)
    assert report.infusions_created == 1 and Infusion.objects.get().patient == jones


def test_it_rejects_a_record_once(conflict, login, coordinator_a, physician_a):
    decide(login(coordinator_a), conflict, decision=IdentityReviewStatus.REJECTED)
    conflict.refresh_from_db()
    assert conflict.status == "rejected" and conflict.resolved_patient is None
    again = decide(login(physician_a), conflict, decision=IdentityReviewStatus.LINKED)
    assert again.status_code == 403
    assert IdentityReview.objects.get().status == "rejected"
