"""Bulk Data NDJSON: streamed line by line, a bad line reported by number, never fatal."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter

from surveillance.imports.fhir.parse import parse_ndjson
from surveillance.imports.fhir.records import ClinicalResource, Ignored, ImportIssue, InfusionRecord, PatientRecord
from tests.imports.conftest import BULK, CPT, NDC, TODAY, concept, official


def parse_file(name: str, codes) -> list[tuple[int, object]]:
    with open(BULK / name, "rb") as handle:
        return list(parse_ndjson(handle, codes, today=TODAY))


def line_count(name: str) -> int:
    with open(BULK / name, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def test_it_reads_the_eleven_patients_of_the_bulk_export(codes):
    items = parse_file("Patient.000.ndjson", codes)
    patients = [item for _, item in items]
    assert len(patients) == 11 and all(isinstance(item, PatientRecord) for item in patients)
    assert [line for line, _ in items] == list(range(1, 12))
    first = patients[0]
    assert (first.source_id, first.mrn, first.identifier_system) == (
        "129c6ac7-8d06-89de-ad63-0204a93e76c3",
        "129c6ac7-8d06-89de-ad63-0204a93e76c3",
        "http://hospital.smarthealthit.org",  # the MR identifier, not the Synthea one before it
    )
    assert (first.deceased, first.deceased_date, first.preferred_language) == (True, dt.date(1989, 5, 9), "en")
    assert sum(patient.deceased for patient in patients) == 2
    assert [patient.birth_date.year for patient in patients].count(2011) == 1


def test_it_accounts_for_every_procedure_and_request_line_as_ignored_and_passes_conditions_on(codes):
    reasons: Counter[str] = Counter()
    for name in ("Procedure.000.ndjson", "MedicationRequest.000.ndjson"):
        items = [item for _, item in parse_file(name, codes)]
        assert all(isinstance(item, Ignored) for item in items), name
        assert len(items) == line_count(name)
        reasons.update(item.reason for item in items)
    assert reasons == {
        "not a CAR-T code": 1194,  # including the combined chemo-radiotherapy: a look-alike, not CAR-T
        "status stopped": 603,
        "status active": 13,
    }
    # diagnoses go on to the second-cancer signals, each with the patient it is about
    conditions = [item for _, item in parse_file("Condition.000.ndjson", codes)]
    assert all(isinstance(item, ClinicalResource) and item.patient_ref for item in conditions)
    assert len(conditions) == line_count("Condition.000.ndjson") == 274


def procedure_line(code: str, patient: str = "p1") -> str:
    resource = official("procedure-example.json")
    resource.update(code=concept(CPT, code), subject={"reference": f"Patient/{patient}"})
    return json.dumps(resource)


def test_it_reports_a_malformed_line_by_number_and_goes_on(codes):
    lines = [
        json.dumps({"resourceType": "Patient", "id": "p1"}),
        "",
        '{"resourceType": "Patient", "id": ',
        json.dumps({"resourceType": "Procedure", "id": "x", "status": "completed"}),  # no subject
        procedure_line("38228"),
    ]
    items = list(parse_ndjson(lines, codes, start_line=10, today=TODAY))
    assert [(line, type(item).__name__) for line, item in items] == [
        (10, "PatientRecord"),
        (12, "ImportIssue"),
        (13, "ImportIssue"),
        (14, "InfusionRecord"),
    ]
    assert items[1][1] == ImportIssue(None, 12, "", items[1][1].message, "structure")
    assert items[1][1].message.startswith("not valid JSON")
    assert (items[2][1].field, items[2][1].message) == ("subject", "required element is missing")
    assert items[3][1].patient_ref == "p1"


def test_it_reads_bytes_with_a_bom_and_reports_bad_bytes(codes):
    lines = [b'\xef\xbb\xbf{"resourceType": "Patient", "id": "p1"}\n', b"\xff\xfe\n", b"[1]\n"]
    items = [item for _, item in parse_ndjson(lines, codes)]
    assert isinstance(items[0], PatientRecord)
    assert [item.message for item in items[1:]] == ["not UTF-8 text", "the line is not a JSON object"]


def test_it_resolves_a_medication_read_earlier_in_the_stream(codes):
    medication = {"resourceType": "Medication", "id": "m1", "code": concept(NDC, "57894-111-01")}
    administration = official("medicationadministration0308.json")
    del administration["medicationCodeableConcept"]
    administration["medicationReference"] = {"reference": "Medication/m1"}
    shared: dict = {}
    list(parse_ndjson([json.dumps(medication)], codes, medications=shared))
    ((_, item),) = parse_ndjson([json.dumps(administration)], codes, medications=shared, today=TODAY)
    assert isinstance(item, InfusionRecord) and item.product_code == "carvykti"
    ((_, unresolved),) = parse_ndjson([json.dumps(administration)], codes, today=TODAY)
    assert isinstance(unresolved, Ignored) and "Medication/m1" in unresolved.reason


def test_it_refuses_urn_references_outside_a_bundle(codes):
    resource = json.loads(procedure_line("0540T"))
    resource["subject"] = {"reference": "urn:uuid:5f0e1c2a-0000-4000-8000-000000000001"}
    ((_, item),) = parse_ndjson([json.dumps(resource)], codes, today=TODAY)
    assert isinstance(item, ImportIssue) and item.field == "subject.reference"


def test_it_streams_without_reading_ahead(codes):
    produced = 0

    def synthetic(count: int):
        nonlocal produced
        for number in range(count):
            produced += 1
            yield f'{{"resourceType": "Patient", "id": "p{number}", "gender": "female"}}\n'

    stream = parse_ndjson(synthetic(50_000), codes)
    assert produced == 0  # a generator: nothing is read before the first item is asked for
    first = list(itertools.islice(stream, 3))
    assert [item.source_id for _, item in first] == ["p0", "p1", "p2"]
    assert produced == 3
    count = 3
    for line, item in stream:  # lockstep to the end: one line read per item, nothing buffered
        count += 1
        assert produced == line == count
        assert isinstance(item, PatientRecord)
    assert count == 50_000


def test_it_refuses_a_resource_id_over_64_characters(codes):
    lines = [
        json.dumps({"resourceType": "Patient", "id": "p" * 65}),
        json.dumps({"resourceType": "Patient", "id": "p"}),
    ]
    items = list(parse_ndjson(lines, codes, today=TODAY))
    assert items[0] == (1, ImportIssue(None, 1, "id", "not a FHIR id: 1 to 64 letters, digits, '-' or '.'", "value"))
    assert isinstance(items[1][1], PatientRecord)
