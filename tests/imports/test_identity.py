"""Patient identity across sending systems: a resource id is only unique within the server that issued it.

Two servers reusing the same Patient id, or the same MRN on people whose birth date or family name differ, must
never be merged: the entry is refused and waits on the identity review worklist.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError, PatientRecord
from surveillance.imports.identity import patient_identify
from surveillance.models import IdentityReview, IdentityReviewStatus, Infusion, Patient
from tests.imports.synthea import car_t_procedure, server_bundle, synthea_patient

pytestmark = pytest.mark.django_db

A, B = "https://ehr-a.example.org/fhir", "https://ehr-b.example.org/R4"


def first_import(centre) -> Patient:
    bundle = server_bundle(A, synthea_patient("1", "Smith", "1960-01-02"), car_t_procedure("p1", "1"))
    ehr_import.bundle_import(bundle, centre)
    return Patient.objects.get()


def test_it_does_not_let_another_server_take_over_a_patient_by_reusing_its_id(centre_a):
    smith = first_import(centre_a)
    other = server_bundle(B, synthea_patient("1", "Jones", "1985-07-08"), car_t_procedure("p1", "1", days_ago=10))
    with pytest.raises(FhirImportError) as refused:
        ehr_import.bundle_import(other, centre_a)
    patient_issue, infusion_issue = [issue for issue in refused.value.issues if issue.code == "conflict"]
    assert patient_issue.entry == 0 and "identity review" in patient_issue.message
    assert infusion_issue.message == "the Patient it refers to awaits an identity review"
    assert "Jones" not in str(refused.value) and "1985" not in str(refused.value)  # no PHI echoed
    smith.refresh_from_db()
    assert (smith.family_name, smith.birth_date, smith.source_system) == ("Smith", dt.date(1960, 1, 2), A)
    assert list(Infusion.objects.values_list("patient_id", flat=True)) == [smith.pk]
    review = IdentityReview.objects.get()
    assert (review.patient, review.source_system, review.source_id, review.status) == (smith, B, "1", "open")
    assert review.record["family_name"] == "Jones"


def test_it_refuses_an_identifier_match_whose_birth_date_differs(centre_a):
    mine = synthea_patient("1", "Smith", "1960-01-02", mrn="M-100")
    ehr_import.bundle_import(server_bundle(A, mine, car_t_procedure("p1", "1")), centre_a)
    theirs = synthea_patient("77", "Smith", "1961-01-02", mrn="M-100")
    with pytest.raises(FhirImportError, match="birth date differs"):
        ehr_import.bundle_import(server_bundle(B, theirs, noise=50), centre_a)
    assert Patient.objects.get().birth_date == dt.date(1960, 1, 2)
    assert IdentityReview.objects.get().reason == "its identifier matches a patient whose birth date differs"


def test_it_matches_the_same_identifier_from_another_server_when_the_details_agree(centre_a):
    mine = synthea_patient("1", "Smith", "1960-01-02", mrn="M-100")
    ehr_import.bundle_import(server_bundle(A, mine, car_t_procedure("p1", "1")), centre_a)
    theirs = synthea_patient("77", "SMITH", "1960-01-02", mrn="M-100")
    report = ehr_import.bundle_import(server_bundle(B, theirs, car_t_procedure("x9", "77")), centre_a)
    assert report.patients_created == 0 and report.infusions_unchanged == 1
    assert Patient.objects.count() == 1 and not IdentityReview.objects.exists()


def test_it_takes_corrections_from_the_server_that_issued_the_id(centre_a):
    smith = first_import(centre_a)
    corrected = server_bundle(A, synthea_patient("1", "Smith-Lee", "1960-01-03"), car_t_procedure("p1", "1"))
    report = ehr_import.bundle_import(corrected, centre_a)
    assert report.patients_updated == 1 and not IdentityReview.objects.exists()
    smith.refresh_from_db()
    assert (smith.family_name, smith.birth_date) == ("Smith-Lee", dt.date(1960, 1, 3))


def test_it_keys_ndjson_patients_by_their_meta_source(centre_a):
    import json

    def line(source: str, family: str) -> str:
        patient = synthea_patient("1", family, "1960-01-02")
        patient["meta"] = {"source": f"{source}#request-{family}"}  # HAPI appends a request id
        return json.dumps(patient)

    ehr_import.ndjson_import([line(A, "Smith")], centre_a)
    again = ehr_import.ndjson_import([line(A, "Smith")], centre_a)
    assert again.patients_unchanged == 1
    other = ehr_import.ndjson_import([line(B, "Jones")], centre_a)
    assert [issue.code for issue in other.errors] == ["conflict"]
    assert Patient.objects.get().family_name == "Smith"
    assert IdentityReview.objects.filter(status=IdentityReviewStatus.OPEN, source_system=B).count() == 1


def test_it_decides_identity_without_an_import(make_patient, centre_a):
    stored = make_patient(centre_a, family_name="Smith", birth_date=dt.date(1960, 1, 2), mrn="M-1")
    record = PatientRecord(
        source_id="9",
        identifier_system="urn:mrn",
        mrn="M-1",
        given_name="Sam",
        family_name="Smith",
        birth_date=None,  # unknown is no evidence against
        sex="male",
        email="",
        phone="",
        preferred_language="en",
        deceased=False,
        deceased_date=None,
    )
    assert patient_identify(record, by_source=None, by_mrn=stored).patient == stored
    assert patient_identify(record, by_source=None, by_mrn=None).patient is None
    assert patient_identify(record, by_source=None, by_mrn=stored).conflict == ""
    bare = patient_identify(
        PatientRecord(**{**_fields(record), "mrn": None, "family_name": "Jones"}), by_source=None, by_mrn=stored
    )
    assert bare.conflict == "it has no identifier and its id is the MRN of another patient"


def test_it_keeps_one_alias_per_record_in_the_database(centre_a, make_patient):
    """A record is linked to a stored patient or made a new one, once: two aliases would send its imports to two
    people. Rejections are history, as many as there were."""
    stored, other = make_patient(centre_a), make_patient(centre_a)
    review = {
        "centre": centre_a,
        "patient": stored,
        "source_system": B,
        "source_id": "1",
        "record": {},
        "reason": "its identifier matches a patient whose birth date differs",
        "resolved_at": timezone.now(),
    }
    IdentityReview.objects.create(**review, status=IdentityReviewStatus.LINKED, resolved_patient=stored)

    with pytest.raises(IntegrityError), transaction.atomic():
        IdentityReview.objects.create(**review, status=IdentityReviewStatus.CREATED, resolved_patient=other)
    IdentityReview.objects.create(**review, status=IdentityReviewStatus.REJECTED)
    IdentityReview.objects.create(**review, status=IdentityReviewStatus.REJECTED)

    assert IdentityReview.objects.filter(source_id="1").count() == 3


def _fields(record: PatientRecord) -> dict:
    return {name: getattr(record, name) for name in record.__slots__}


def test_it_keeps_one_open_review_per_record_even_when_a_concurrent_import_writes_it_first(centre_a, monkeypatch):
    from django.db import IntegrityError

    first_import(centre_a)
    other = server_bundle(B, synthea_patient("1", "Jones", "1985-07-08"), noise=20)
    with pytest.raises(FhirImportError):
        ehr_import.bundle_import(other, centre_a)
    other["entry"][0]["resource"]["name"][0]["family"] = "Jones-Ruiz"

    def raced(**kwargs):  # the other import's row is already there when this one inserts
        raise IntegrityError("identity_review_open_unique")

    monkeypatch.setattr(IdentityReview.objects, "update_or_create", raced)
    with pytest.raises(FhirImportError):
        ehr_import.bundle_import(other, centre_a)
    review = IdentityReview.objects.get()
    assert review.record["family_name"] == "Jones-Ruiz"
