"""FHIR Observation, Condition and DiagnosticReport (Synthea-shaped) -> the plain records the signals read."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.imports.fhir.clinical import clinical_records
from surveillance.models import SignalReview
from surveillance.signals.review import signals_record
from surveillance.signals.rules import Diagnosis, LabResult, VariantResult

UCUM = "http://unitsofmeasure.org"


def observation(rid: str, loinc: str, value, unit: str, when: str = "2025-10-31T09:12:00-05:00", **extra) -> dict:
    """An Observation as Synthea writes one (laboratory category, UCUM quantity, encounter-dated)."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": "urn:uuid:5cbc121b-cd71-4428-b8b7-31e53eba8184"},
        "effectiveDateTime": when,
        "issued": "2025-10-31T09:12:00.456-05:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        **extra,
    }


def condition(rid: str, coding: list[dict], onset: str | None = "2026-04-02T10:00:00-05:00", **extra) -> dict:
    resource = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {"coding": coding},
        "subject": {"reference": "Patient/p1"},
        "recordedDate": "2026-04-05",
        **extra,
    }
    if onset:
        resource["onsetDateTime"] = onset
    return resource


def variant(rid: str, gene: str, vaf: float, vaf_unit: str = "1", **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "69548-6"}]},
        "subject": {"reference": "Patient/p1"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "48018-6"}]},
                "valueCodeableConcept": {
                    "coding": [{"system": "http://www.genenames.org/geneId", "code": "HGNC:2978", "display": gene}]
                },
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "81258-6"}]},
                "valueQuantity": {"value": vaf, "system": UCUM, "code": vaf_unit},
            },
        ],
        **extra,
    }


def test_it_reads_synthea_blood_counts_as_lab_results():
    parsed = clinical_records(
        [
            observation("wbc", "6690-2", 6.8, "10*3/uL"),
            observation(
                "hgb", "718-7", 14.1, "g/dL", referenceRange=[{"low": {"value": 13.5, "unit": "g/dL", "code": "g/dL"}}]
            ),
            observation("mcv", "787-2", 88.2, "fL"),
            observation("plt", "777-3", 262.5, "10*3/uL"),
        ]
    )
    on = dt.date(2025, 10, 31)
    assert parsed.labs == [
        LabResult("6690-2", 6.8, "10*3/uL", on, "Observation/wbc"),
        LabResult("718-7", 14.1, "g/dL", on, "Observation/hgb", 13.5),
        LabResult("787-2", 88.2, "fL", on, "Observation/mcv"),
        LabResult("777-3", 262.5, "10*3/uL", on, "Observation/plt"),
    ]
    assert parsed.ignored == []


def test_it_reads_the_loinc_components_of_a_panel():
    panel = observation("cbc", "58410-2", None, "")
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
            "valueQuantity": {"value": 1.1, "code": "10*3/uL"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "777-3"}]},
            "valueQuantity": {"value": 210, "code": "10*3/uL"},
        },
    ]
    parsed = clinical_records([panel])
    assert [(lab.loinc, lab.value, lab.reference) for lab in parsed.labs] == [
        ("751-8", 1.1, "Observation/cbc#751-8"),
        ("777-3", 210.0, "Observation/cbc#777-3"),
    ]


def test_it_leaves_out_what_it_cannot_use_and_says_why():
    text_result = observation("smoking", "72166-2", 1, "")
    del text_result["valueQuantity"]
    text_result["valueCodeableConcept"] = {"text": "Never smoked"}
    partial = observation("partial", "751-8", 0.4, "10*3/uL", when="2025-10")
    del partial["issued"]  # with neither a full effective date nor an issue date it cannot be placed
    parsed = clinical_records(
        [
            observation("prelim", "751-8", 0.4, "10*3/uL", status="preliminary"),
            partial,
            text_result,
            {"resourceType": "Procedure", "id": "p1", "status": "completed"},
            {"resourceType": "Encounter", "id": "e1", "status": "finished"},
            {"resourceType": "Observation", "id": "bad", "status": "final"},
        ]
    )
    assert parsed.labs == []
    reasons = {item.source_id: item.reason for item in parsed.ignored}
    assert reasons["Observation/prelim"].startswith("status preliminary")
    assert reasons["Observation/partial"] == "no full effective date"
    assert reasons["Observation/smoking"] == "no LOINC code with a numeric value"
    assert reasons["Procedure/p1"] == "not a result or diagnosis"
    assert "Encounter/e1" not in reasons  # the visit reconciliation reads it
    assert reasons["Observation/bad"].startswith("not valid FHIR R4")


def test_it_reads_conditions_preferring_icd10_and_falling_back_to_the_recorded_date():
    parsed = clinical_records(
        [
            condition(
                "tcl",
                [
                    {"system": "http://snomed.info/sct", "code": "118617000"},
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C84.40"},
                ],
            ),
            condition("lung", [{"system": "http://snomed.info/sct", "code": "254637007"}], onset=None),
            condition(
                "refuted",
                [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C92.00"}],
                verificationStatus={
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}
                    ]
                },
            ),
        ]
    )
    assert parsed.diagnoses == [
        Diagnosis("icd10", "C84.40", dt.date(2026, 4, 2), "Condition/tcl"),
        Diagnosis("snomed", "254637007", dt.date(2026, 4, 5), "Condition/lung"),
    ]
    assert [item.reason for item in parsed.ignored] == ["verification status refuted"]


def test_it_reads_gene_variants_from_observations_and_a_report_in_a_bundle():
    report = {
        "resourceType": "DiagnosticReport",
        "id": "ngs-m12",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "81247-9"}]},
        "effectiveDateTime": "2026-01-30",
        "contained": [variant("v1", "TET2", 0.061)],
        "result": [{"reference": "#v1"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": report},
            {"resource": variant("v2", "DNMT3A", 4.2, vaf_unit="%", effectiveDateTime="2025-01-10")},
        ],
    }
    parsed = clinical_records([bundle])
    assert parsed.variants == [
        VariantResult("TET2", pytest.approx(6.1), dt.date(2026, 1, 30), "DiagnosticReport/ngs-m12#v1"),
        VariantResult("DNMT3A", 4.2, dt.date(2025, 1, 10), "Observation/v2"),
    ]


@pytest.mark.django_db
def test_it_feeds_signals_record_from_a_synthea_patient(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2025, 1, 31))
    resources = [
        observation("anc-m9", "751-8", 1.2, "10*3/uL", when="2025-10-31T09:12:00-05:00"),
        observation("anc-m3", "751-8", 3.9, "10*3/uL", when="2025-05-01T09:12:00-05:00"),
        condition("breast", [{"system": "http://snomed.info/sct", "code": "254837009"}], onset="2019-03-01"),
    ]
    report = signals_record(infusion, clinical_records(resources).records(), source="fhir")
    assert report.raised == 1
    review = SignalReview.objects.get()
    assert (review.kind, review.signals.get().evidence_key) == ("neutropenia", "Observation/anc-m9")
