"""A Bundle imports atomically: any invalid entry refuses the whole Bundle, naming every problem."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from surveillance.imports.fhir.parse import parse_bundle
from surveillance.imports.fhir.records import FhirImportError
from tests.imports.conftest import CPT, TODAY, collection, concept, official


def car_t_procedure(**changes) -> dict:
    resource = official("procedure-example.json")
    resource["code"] = concept(CPT, "0540T")
    resource.update(changes)
    return resource


def refused(bundle, codes, **options) -> list[tuple[int | None, str]]:
    with pytest.raises(FhirImportError) as caught:
        parse_bundle(bundle, codes, today=TODAY, **options)
    return [(issue.entry, issue.field) for issue in caught.value.issues]


def test_it_refuses_the_bundle_naming_each_invalid_entry_and_field(codes):
    bad_patient = official("patient-example.json")
    bad_patient["birthDate"] = "1974-13-45"
    bundle = collection(official("patient-example-d.json"), car_t_procedure(performedDateTime="yesterday"), bad_patient)
    assert refused(bundle, codes) == [(1, "performedDateTime"), (2, "birthDate")]


def test_it_describes_the_problems_as_a_valid_operation_outcome(codes):
    bundle = collection(official("patient-example-d.json"), car_t_procedure(performedDateTime="yesterday"))
    with pytest.raises(FhirImportError) as caught:
        parse_bundle(json.dumps(bundle), codes, today=TODAY)
    outcome = caught.value.to_operation_outcome()
    OperationOutcome.model_validate(outcome)  # the library itself accepts it
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "structure")
    assert issue["expression"] == ["Bundle.entry[1].resource.performedDateTime"]
    assert "yesterday" not in issue["diagnostics"]  # values are not echoed (they may be PHI)


def test_it_returns_the_valid_entries_and_the_issues_when_not_atomic(codes):
    bundle = collection(official("patient-example-d.json"), car_t_procedure(performedDateTime="yesterday"))
    result = parse_bundle(bundle, codes, today=TODAY, atomic=False)
    assert [patient.source_id for patient in result.patients] == ["pat4"]
    assert result.infusions == []
    assert [(issue.entry, issue.field) for issue in result.issues] == [(1, "performedDateTime")]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"performedDateTime": "1899-12-31"}, "performedDateTime"),
        ({"performedDateTime": "2026-06-02"}, "performedDateTime"),  # more than a year after TODAY
        ({"performedDateTime": "2013-04"}, "performedDateTime"),  # no day: the schedule needs one
        ({"performedDateTime": None}, "performed[x]"),
        ({"performedPeriod": {"start": "2013-04-05"}}, ""),  # two choices of performed[x] at once
        ({"subject": None}, "subject"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_it_refuses_an_infusion_with_an_impossible_or_missing_element(codes, changes, field):
    resource = car_t_procedure(**changes)
    for key in [key for key, value in changes.items() if value is None]:
        del resource[key]
    assert refused(collection(resource), codes) == [(0, field)]


def test_it_accepts_an_infusion_up_to_a_year_ahead(codes):
    result = parse_bundle(collection(car_t_procedure(performedDateTime="2026-06-01")), codes, today=TODAY)
    assert len(result.infusions) == 1


def test_it_refuses_a_birth_date_in_the_future(codes):
    patient = official("patient-example-d.json")
    patient["birthDate"] = "2025-06-02"
    assert refused(collection(patient), codes) == [(0, "birthDate")]


def test_it_refuses_the_same_resource_twice(codes):
    assert refused(collection(official("patient-example-d.json"), official("patient-example-d.json")), codes) == [
        (1, "id")
    ]


def test_it_names_bundle_level_problems_by_their_path(codes):
    bundle = collection(official("patient-example-d.json"))
    bundle["entry"][0]["fullUrl"] = 5
    bundle["entry"].append({"resource": {"id": "no-type"}})
    assert refused(bundle, codes) == [(0, "Bundle.entry[0].fullUrl"), (1, "resourceType")]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (b"{not json", "", "not valid JSON"),
        (b'{"resourceType": "Bundle", "type": "collection", "total": NaN}', "", "not valid JSON"),
        (b"[]", "", "not a JSON object"),
        (json.dumps(official("patient-example.json")), "resourceType", "expected a Bundle"),
        ({"resourceType": "Bundle", "type": "history"}, "Bundle.type", "history cannot be imported"),
        ({"resourceType": "Bundle", "type": "batch-response"}, "Bundle.type", "batch-response"),
        ({"resourceType": "Bundle", "type": "collection", "entry": {}}, "Bundle.entry", "expected an array"),
    ],
)
def test_it_refuses_what_is_not_an_importable_bundle(codes, data, field, message):
    with pytest.raises(FhirImportError) as caught:
        parse_bundle(data, codes, today=TODAY)
    (issue,) = caught.value.issues
    assert issue.field == field and message in issue.message


def test_it_refuses_a_bundle_over_the_size_limit(codes):
    data = json.dumps(collection(official("patient-example.json")))
    with pytest.raises(FhirImportError, match="over 100"):
        parse_bundle(data, codes, max_bytes=100)
    assert parse_bundle(data, codes, max_bytes=len(data)).patients


def test_it_accepts_a_batch_and_an_empty_bundle(codes):
    batch = collection(car_t_procedure())
    batch["type"] = "batch"
    assert len(parse_bundle(batch, codes, today=TODAY).infusions) == 1
    empty = parse_bundle({"resourceType": "Bundle", "type": "collection"}, codes)
    assert (empty.patients, empty.infusions, empty.ignored, empty.issues) == ([], [], [], [])


def test_it_refuses_relative_full_urls_which_leave_a_patient_without_a_source(codes):
    patient = official("patient-example.json")
    del patient["id"]  # the fullUrl would be its only identity
    bundle = collection(patient, car_t_procedure(), full_urls=["Patient/example", "https://x.example/fhir/Procedure/1"])
    assert refused(bundle, codes) == [(0, "Bundle.entry[0].fullUrl")]


def test_it_refuses_an_id_that_breaks_the_fhir_id_rules(codes):
    for bad in ("a" * 65, "a_b", "a b"):
        patient = official("patient-example.json")
        patient["id"] = bad
        with pytest.raises(FhirImportError) as caught:
            parse_bundle(collection(patient), codes, today=TODAY)
        ((entry, field, message),) = [(issue.entry, issue.field, issue.message) for issue in caught.value.issues]
        assert (entry, field, message) == (0, "id", "not a FHIR id: 1 to 64 letters, digits, '-' or '.'")
