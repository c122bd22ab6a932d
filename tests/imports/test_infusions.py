"""Positive CAR-T cases, built by putting codes from car_t_codes.csv into the official examples."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.imports.fhir.parse import parse_bundle
from surveillance.imports.fhir.records import FhirImportError, InfusionRecord
from tests.imports.conftest import CPT, HCPCS, ICD10PCS, NDC, RXNORM, TODAY, collection, concept, official


def only_infusion(bundle: dict, codes) -> InfusionRecord:
    result = parse_bundle(bundle, codes, today=TODAY)
    assert result.ignored == [], result.ignored
    (infusion,) = result.infusions
    return infusion


def procedure(system: str, code: str) -> dict:
    resource = official("procedure-example.json")
    resource["code"] = concept(system, code)
    return resource


def test_it_reads_a_hcpcs_coded_procedure_with_its_patient(codes):
    bundle = collection(official("patient-example.json"), procedure(HCPCS, "Q2041"))
    result = parse_bundle(bundle, codes, today=TODAY)
    (infusion,) = result.infusions
    assert infusion == InfusionRecord(
        source_id="example",
        resource_type="Procedure",
        patient_ref="example",
        product_code="yescarta",
        matched_code=(HCPCS, "Q2041"),
        infusion_date=dt.date(2013, 4, 5),
        lot_number="",
        entry=1,
    )
    assert result.patients[0].source_id == infusion.patient_ref


def test_it_dates_a_procedure_by_its_performed_period(codes):
    resource = official("procedure-example-f201-tpf.json")
    resource["code"]["coding"].append({"system": ICD10PCS, "code": "XW043H7"})  # beside the SNOMED coding
    infusion = only_infusion(collection(resource), codes)
    assert (infusion.product_code, infusion.infusion_date, infusion.patient_ref) == (
        "yescarta",
        dt.date(2013, 1, 28),
        "f201",
    )


def test_it_reads_a_generic_administration_code_without_a_product(codes):
    infusion = only_infusion(collection(procedure(CPT, "38228")), codes)
    assert (infusion.product_code, infusion.matched_code) == (None, (CPT, "38228"))


def test_it_takes_the_product_from_used_code_beside_a_generic_code(codes):
    resource = procedure(CPT, "0540T")
    resource["usedCode"] = [concept(HCPCS, "Q2053")]
    assert only_infusion(collection(resource), codes).product_code == "tecartus"


def test_it_ignores_a_harvest_procedure(codes):
    result = parse_bundle(collection(procedure(CPT, "38225")), codes, today=TODAY)
    assert result.infusions == []
    assert [item.reason for item in result.ignored] == ["CAR-T process step 38225, not an infusion"]


def test_it_resolves_a_contained_medication(codes):
    resource = official("medicationadministration0301.json")
    resource["status"] = "completed"
    medication = resource["contained"][0]
    assert medication["id"] == "med0301"
    medication["code"] = concept(NDC, "0078-0846-19")
    medication["batch"] = {"lotNumber": "LOT-42"}
    infusion = only_infusion(collection(resource), codes)
    assert (infusion.resource_type, infusion.product_code, infusion.matched_code) == (
        "MedicationAdministration",
        "kymriah",
        (NDC, "0078-0846-19"),
    )
    assert (infusion.infusion_date, infusion.lot_number, infusion.patient_ref) == (
        dt.date(2015, 1, 15),
        "LOT-42",
        "pat1",
    )


def test_it_reads_a_medication_codeable_concept(codes):
    resource = official("medicationadministration0308.json")
    resource["medicationCodeableConcept"] = concept(RXNORM, "2387347")
    infusion = only_infusion(collection(resource), codes)
    assert (infusion.product_code, infusion.infusion_date) == ("tecartus", dt.date(2015, 1, 15))


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("medicationadministration0301.json", "in-progress"),
        ("medicationadministration0303.json", "entered-in-error"),
        ("medicationadministrationexample3.json", "on-hold"),
    ],
)
def test_it_does_not_count_a_car_t_administration_that_was_not_completed(codes, name, status):
    resource = official(name)
    resource["contained"][0]["code"] = concept(NDC, "71287-119-02")
    result = parse_bundle(collection(resource), codes, today=TODAY)
    assert result.infusions == []
    assert [item.reason for item in result.ignored] == [f"status {status} (CAR-T coded, not counted as an infusion)"]


def medication_request(status: str, intent: str = "order") -> dict:
    resource = official("medicationrequestexample1.json")
    resource["contained"][0]["code"] = concept(NDC, "59572-515-01")
    resource.update(status=status, intent=intent)
    return resource


def test_it_counts_a_completed_medication_request_on_its_authored_date(codes):
    infusion = only_infusion(collection(medication_request("completed")), codes)
    assert (infusion.resource_type, infusion.product_code, infusion.infusion_date) == (
        "MedicationRequest",
        "abecma",
        dt.date(2015, 1, 15),
    )


@pytest.mark.parametrize(
    ("status", "intent", "reason"),
    [
        ("active", "order", "status active (CAR-T coded, not counted as an infusion)"),
        ("completed", "plan", "MedicationRequest intent plan is not an order"),
    ],
)
def test_it_does_not_take_an_open_order_for_an_infusion(codes, status, intent, reason):
    result = parse_bundle(collection(medication_request(status, intent)), codes, today=TODAY)
    assert result.infusions == []
    assert [item.reason for item in result.ignored] == [reason]


def test_it_resolves_a_medication_entry_and_a_urn_uuid_subject(codes):
    patient = official("patient-example-newborn.json")
    del patient["id"]
    medication = {"resourceType": "Medication", "id": "carvykti", "code": concept(RXNORM, "2594780")}
    resource = official("medicationadministration0308.json")
    del resource["medicationCodeableConcept"]
    resource["medicationReference"] = {"reference": "Medication/carvykti"}
    resource["subject"] = {"reference": "urn:uuid:5f0e1c2a-0000-4000-8000-000000000001"}
    bundle = collection(patient, medication, resource, full_urls=[resource["subject"]["reference"], None, None])
    result = parse_bundle(bundle, codes, today=TODAY)
    (infusion,) = result.infusions
    assert infusion.product_code == "carvykti"
    assert infusion.patient_ref == result.patients[0].source_id == "urn:uuid:5f0e1c2a-0000-4000-8000-000000000001"


def test_it_resolves_an_absolute_patient_reference(codes):
    resource = procedure(CPT, "0540T")
    resource["subject"] = {"reference": "http://example.org/fhir/Patient/123/_history/2"}
    assert only_infusion(collection(resource), codes).patient_ref == "123"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("Group/103", "the subject is a Group, not a Patient"),
        ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "matches no entry's fullUrl"),
    ],
)
def test_it_refuses_an_infusion_it_cannot_attribute_to_a_patient(codes, reference, message):
    resource = procedure(CPT, "0540T")
    resource["subject"] = {"reference": reference}
    with pytest.raises(FhirImportError) as caught:
        parse_bundle(collection(resource), codes, today=TODAY)
    (issue,) = caught.value.issues
    assert issue.field == "subject.reference" and message in issue.message
