"""FHIR resources that carry risk flags: NGS findings, EBV results, a prior autologous transplant, a cytopenia."""

from __future__ import annotations

import json

import pytest

from surveillance.imports.fhir import risk_codes
from surveillance.imports.fhir.parse import parse_bundle, parse_ndjson
from surveillance.imports.fhir.records import FhirImportError, Ignored, RiskFlagRecord
from surveillance.scheduling.engine import RISK_FLAGS
from tests.imports.conftest import CPT, TODAY, collection, concept

LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SUBJECT = {"reference": "Patient/p1"}
PATIENT = {"resourceType": "Patient", "id": "p1"}


def _variant(gene: str, vaf: float, answer: str = "LA9633-4", **extra) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"var-{gene}",
        "status": "final",
        "code": concept(LOINC, "69548-6"),
        "subject": SUBJECT,
        "effectiveDateTime": "2025-03-02",
        "valueCodeableConcept": concept(LOINC, answer),
        "component": [
            {"code": concept(LOINC, "48018-6"), "valueCodeableConcept": {"coding": [{"display": gene}]}},
            {"code": concept(LOINC, "81258-6"), "valueQuantity": {"value": vaf}},
        ],
        **extra,
    }


def _flags(codes, *resources: dict) -> list[RiskFlagRecord]:
    return parse_bundle(collection(PATIENT, *resources), codes, today=TODAY).risk_flags


def test_it_reads_a_ch_variant_with_its_gene_and_vaf(codes):
    (flag,) = _flags(codes, _variant("DNMT3A", 0.04))
    assert (flag.code, flag.present, flag.patient_ref, str(flag.observed_on)) == (
        "clonal_haematopoiesis",
        True,
        "p1",
        "2025-03-02",
    )
    assert flag.findings == (("DNMT3A", 4.0),) and flag.detail == "DNMT3A 4%"
    assert flag.matched_code == (LOINC, "69548-6")


def test_it_reads_an_absent_variant_as_an_absent_flag(codes):
    (flag,) = _flags(codes, _variant("TET2", 0.03, answer="LA9634-2"))
    assert (flag.code, flag.present, flag.findings) == ("clonal_haematopoiesis", False, ())


def test_it_ignores_a_variant_below_the_threshold_or_outside_the_ch_genes(codes):
    result = parse_bundle(collection(PATIENT, _variant("TET2", 0.01), _variant("BRCA1", 0.3)), codes, today=TODAY)
    assert result.risk_flags == []
    assert sorted(item.reason for item in result.ignored) == [
        "VAF below 2 %",
        "variant in a gene that is not a CH gene of the reference",
    ]


def test_it_reads_an_ebv_result_and_a_viral_load(codes):
    positive = {
        "resourceType": "Observation",
        "id": "ebv-1",
        "status": "final",
        "code": concept(LOINC, "5002-1"),
        "subject": SUBJECT,
        "effectiveDateTime": "2025-02-01",
        "valueCodeableConcept": concept("http://snomed.info/sct", "260373001"),
    }
    load = {**positive, "id": "ebv-2", "code": concept(LOINC, "36923-1"), "valueQuantity": {"value": 0}}
    del load["valueCodeableConcept"]
    flags = _flags(codes, positive, load)
    assert [(f.code, f.present) for f in flags] == [("ebv_positive", True), ("ebv_positive", False)]


def test_it_reads_a_prior_autologous_transplant_procedure(codes):
    procedure = {
        "resourceType": "Procedure",
        "id": "hct-1",
        "status": "completed",
        "code": concept(CPT, "38241"),
        "subject": SUBJECT,
        "performedDateTime": "2022-05-10",
    }
    (flag,) = _flags(codes, procedure)
    assert (flag.code, flag.present, flag.resource_type, flag.matched_code) == (
        "prior_auto_hct",
        True,
        "Procedure",
        (CPT, "38241"),
    )


def test_it_reads_a_cytopenia_condition_and_skips_one_entered_in_error(codes):
    condition = {
        "resourceType": "Condition",
        "id": "cyt-1",
        "code": concept(ICD10CM, "D61.818"),
        "subject": SUBJECT,
        "onsetDateTime": "2025-04-20",
    }
    wrong = {
        **condition,
        "id": "cyt-2",
        "verificationStatus": concept("http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error"),
    }
    result = parse_bundle(collection(PATIENT, condition, wrong), codes, today=TODAY)
    assert [(f.code, f.source_id) for f in result.risk_flags] == [("prolonged_cytopenia", "cyt-1")]
    assert any(item.reason == "verification entered-in-error" for item in result.ignored)


def test_it_names_the_element_of_a_flag_without_a_date(codes):
    undated = _variant("DNMT3A", 0.05)
    del undated["effectiveDateTime"]
    with pytest.raises(FhirImportError) as refused:
        parse_bundle(collection(PATIENT, undated), codes, today=TODAY)
    assert [issue.field for issue in refused.value.issues] == ["issued"]


def test_it_leaves_other_observations_unvalidated_for_the_signals(codes):
    other = {"resourceType": "Observation", "id": "hb", "status": "bogus", "code": concept(LOINC, "718-7")}
    result = parse_bundle(collection(PATIENT, other, {**other, "id": "hb2", "subject": SUBJECT}), codes, today=TODAY)
    assert result.risk_flags == []
    assert [item.reason for item in result.ignored] == ["its subject is not a Patient of this export"]
    assert [(item.source_id, item.patient_ref) for item in result.clinical] == [("hb2", "p1")]


def test_it_reads_flags_from_ndjson_lines(codes):
    lines = [json.dumps(PATIENT), json.dumps(_variant("ASXL1", 0.05))]
    items = [item for _, item in parse_ndjson(lines, codes, today=TODAY)]
    flags = [item for item in items if isinstance(item, RiskFlagRecord)]
    assert [(f.code, f.line, f.findings) for f in flags] == [("clonal_haematopoiesis", 2, (("ASXL1", 5.0),))]
    assert not [item for item in items if isinstance(item, Ignored)]


def test_it_knows_every_flag_it_emits():
    emitted = {*risk_codes.OBSERVATION_FLAGS.values(), *risk_codes.CONDITION_FLAGS.values(), risk_codes.PRIOR_AUTO_HCT}
    assert emitted <= RISK_FLAGS


def test_it_reads_a_condition_whose_verification_has_only_text(codes):
    condition = {
        "resourceType": "Condition",
        "id": "cyt-3",
        "code": concept(ICD10CM, "D70.1"),
        "verificationStatus": {"text": "confirmed by haematology"},
        "subject": SUBJECT,
        "recordedDate": "2025-04-21",
    }
    (flag,) = _flags(codes, condition)
    assert (flag.code, str(flag.observed_on)) == ("prolonged_cytopenia", "2025-04-21")
