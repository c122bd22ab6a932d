"""Each official HL7 R4 example, as the samples README says it should be handled."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.imports.fhir.parse import parse_bundle
from surveillance.imports.fhir.records import FhirImportError
from tests.imports.conftest import TODAY, collection, official


def parse_one(name: str, codes):
    return parse_bundle(collection(official(name)), codes, today=TODAY)


def test_it_imports_the_fully_populated_patient(codes):
    (patient,) = parse_one("patient-example.json", codes).patients
    assert (patient.source_id, patient.mrn, patient.identifier_system) == (
        "example",
        "12345",
        "urn:oid:1.2.36.146.595.217.0.1",
    )
    assert (patient.given_name, patient.family_name) == ("Peter James", "Chalmers")  # the official name
    assert patient.birth_date == dt.date(1974, 12, 25)  # _birthDate's extension does not get in the way
    assert (patient.sex, patient.phone, patient.preferred_language) == ("male", "(03) 5555 6473", "en")
    assert not patient.deceased


def test_it_flags_the_deceased_patient(codes):
    (patient,) = parse_one("patient-example-d.json", codes).patients
    assert patient.deceased is True
    assert patient.deceased_date is None  # deceasedBoolean carries no date


def test_it_imports_the_newborn_without_name_or_identifier(codes):
    (patient,) = parse_one("patient-example-newborn.json", codes).patients
    assert (patient.source_id, patient.mrn, patient.identifier_system) == ("newborn", None, None)
    assert (patient.given_name, patient.family_name, patient.birth_date) == ("", "", dt.date(2017, 9, 5))


def test_it_rejects_the_animal(codes):
    with pytest.raises(FhirImportError) as caught:
        parse_one("patient-example-animal.json", codes)
    (issue,) = caught.value.issues
    assert (issue.entry, issue.field) == (0, "extension")
    assert "patient-animal" in issue.message


def test_it_imports_the_collection_of_twelve_patients(codes):
    result = parse_bundle(official("patient-examples-general.json"), codes, today=TODAY)
    assert [patient.source_id for patient in result.patients] == [str(number) for number in range(1, 13)]
    assert all(patient.mrn is None for patient in result.patients)  # an SSN is never taken for an MRN
    (deceased,) = [patient for patient in result.patients if patient.deceased]
    assert (deceased.source_id, deceased.deceased_date) == ("9", dt.date(2002, 8, 24))
    assert result.infusions == [] and result.ignored == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("procedure-example.json", "not a CAR-T code"),
        ("procedure-example-f201-tpf.json", "not a CAR-T code"),
        ("procedure-example-appendectomy-narrative.json", "no code"),
        ("medicationadministration0301.json", "status in-progress"),
        ("medicationadministration0303.json", "status entered-in-error"),
        ("medicationadministration0308.json", "not a CAR-T code"),
        ("medicationadministrationexample3.json", "status on-hold"),
        ("medicationrequestexample1.json", "status active"),
    ],
)
def test_it_ignores_non_car_t_resources_with_the_reason(codes, name, reason):
    result = parse_one(name, codes)
    assert result.infusions == [] and result.patients == []
    (ignored,) = result.ignored
    assert (ignored.source_id, ignored.reason) == (official(name)["id"], reason)


def test_it_passes_a_diagnosis_on_to_the_signals_with_its_patient(codes):
    result = parse_one("condition-example-f202-malignancy.json", codes)
    assert result.infusions == [] and result.patients == [] and result.ignored == []
    (diagnosis,) = result.clinical
    assert (diagnosis.resource_type, diagnosis.source_id, diagnosis.patient_ref) == ("Condition", "f202", "f201")


def test_it_handles_the_transaction_with_delete_and_get_entries(codes):
    result = parse_bundle(official("bundle-transaction.json"), codes, today=TODAY)
    assert [patient.entry for patient in result.patients] == [0, 1, 2, 3, 4]
    assert result.patients[0].source_id == "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"  # no id: the fullUrl
    assert result.patients[2].source_id == "123"
    assert result.patients[1].mrn == "234234"  # the only identifier, untyped
    reasons = {item.entry: (item.resource_type, item.reason) for item in result.ignored}
    assert reasons == {
        5: ("Patient", "DELETE entry has no resource to import"),
        6: ("Patient", "DELETE entry has no resource to import"),
        7: ("Parameters", "not a supported resource type"),
        8: ("Patient", "GET entry has no resource to import"),
        9: ("Patient", "GET entry has no resource to import"),
    }


def test_it_tolerates_the_searchset_and_resolves_the_included_medication(codes):
    result = parse_bundle(official("bundle-example.json"), codes, today=TODAY)
    assert [(item.resource_type, item.reason) for item in result.ignored] == [
        ("MedicationRequest", "status unknown"),
        ("Medication", "Medication: read only to resolve medication references"),
    ]


def test_it_rejects_the_transaction_response(codes):
    with pytest.raises(FhirImportError) as caught:
        parse_bundle(official("bundle-response.json"), codes, today=TODAY)
    (issue,) = caught.value.issues
    assert issue.field == "Bundle.type" and "transaction-response" in issue.message
