"""A Patient, Procedure or MedicationAdministration in the plain shape is read without full validation, to the records
and problems full validation gives; any other is left to full validation, which accepts or refuses it as it always
has."""

from __future__ import annotations

import copy
import json

import pytest

from surveillance.imports.fhir import parse
from surveillance.imports.fhir.parse import parse_bundle, parse_ndjson
from surveillance.imports.fhir.plain import PLAIN_READERS
from surveillance.imports.fhir.records import ImportIssue, InfusionRecord, PatientRecord
from tests.imports.conftest import BULK, HCPCS, RXNORM, TODAY, collection, concept

MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def patient(rid: str = "p1", **extra) -> dict:
    """A Patient as ``bench/_common.py`` writes one, with what a plain export adds to it."""
    return {
        "resourceType": "Patient",
        "id": rid,
        "meta": {
            "versionId": "3",
            "lastUpdated": "2025-05-01T10:00:00.123+02:00",
            "source": "https://ehr.example/fhir",
        },
        "identifier": [{"type": MR, "system": "urn:bench:mrn", "value": "B0000001"}],
        "name": [{"use": "official", "family": "Bench1", "given": ["Pat", "Q"]}],
        "gender": "female",
        "birthDate": "1950-02-28",
        "telecom": [
            {"system": "email", "value": "p1@example.org"},
            {"system": "phone", "value": "+1 617 555 0101", "use": "mobile", "rank": 1},
        ],
        "communication": [{"language": concept("urn:ietf:bcp:47", "es"), "preferred": True}],
        **extra,
    }


def procedure(rid: str = "proc-1", **extra) -> dict:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": concept(HCPCS, "Q2041"),
        "subject": {"reference": "Patient/p1"},
        "performedDateTime": "2024-03-05",
        **extra,
    }


def administration(rid: str = "med-1", **extra) -> dict:
    return {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "medicationCodeableConcept": concept(RXNORM, "1987402"),
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-05T23:30:00-05:00",
        **extra,
    }


def changed(resource: dict, change) -> dict:
    resource = copy.deepcopy(resource)
    change(resource)
    return resource


PLAIN = [
    patient(),
    patient("bare", meta={"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]}),
    patient("deceased", deceasedDateTime="2024-01-02T08:00:00Z", active=True),
    patient("deceased-flag", deceasedBoolean=True),
    patient("names", name=[{"use": "old", "family": "Before"}, {"text": "José Ñúñez", "given": ["José"]}]),
    patient("odd-gender", gender="bogus"),  # read, then refused by the import's own check
    patient("future", birthDate="2099-01-01"),  # likewise
    procedure(),
    procedure("proc-instant", performedDateTime="2024-03-05T23:30:00+14:00", meta={"source": "https://a.example/fhir"}),
    procedure("proc-stopped", status="stopped"),
    procedure("proc-other-code", code=concept(HCPCS, "J9999")),
    procedure("proc-no-code", code=None),
    procedure("proc-urn-subject", subject={"reference": "urn:uuid:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}),
    procedure("proc-too-early", performedDateTime="2001-01-01"),
    procedure("proc-encounter", encounter={"reference": "Encounter/e1"}, category=concept(HCPCS, "Q2041")),
    administration(),
    administration("med-date", effectiveDateTime="2024-03-05", context={"reference": "Encounter/e1"}),
    administration("med-in-progress", status="in-progress"),
]
PLAIN = [{key: value for key, value in resource.items() if value is not None} for resource in PLAIN]

UNUSUAL = [
    patient("extension", extension=[{"url": "http://example.org/x", "valueString": "y"}]),  # unknown to the plain shape
    patient("address", address=[{"city": "Boston"}]),
    patient("unknown", foo=1),  # unknown to FHIR: refused
    patient("gender-empty", gender=""),  # refused
    patient("partial-birth", birthDate="1950"),  # accepted, the birth date unknown
    patient("bad-birth", birthDate="1950-02-30"),  # refused
    patient("both-deceased", deceasedBoolean=False, deceasedDateTime="2024-01-02"),  # refused
    patient("deceased-string", deceasedBoolean="true"),  # accepted as true
    patient("rank-zero", telecom=[{"system": "email", "value": "p1@example.org", "rank": 0}]),  # refused
    patient("rank-bool", telecom=[{"system": "email", "value": "p1@example.org", "rank": True}]),
    patient("spaced-value", identifier=[{"type": MR, "system": "urn:bench:mrn", "value": " B01 "}]),
    patient("blank-value", identifier=[{"type": MR, "system": "urn:bench:mrn", "value": " "}]),
    patient("given-null", name=[{"given": ["Pat", None]}]),  # refused
    patient("name-tab", name=[{"given": ["Pat\tQ"]}]),
    patient("no-language", communication=[{"preferred": True}]),  # refused
    patient("offset", meta={"lastUpdated": "2025-05-01T10:00:00+14:30"}),  # refused
    patient("leap-second", meta={"lastUpdated": "2016-12-31T23:59:60Z"}),
    patient("long-id" + "x" * 60),  # refused
    patient("_gender", _gender={"extension": [{"url": "http://example.org/x", "valueString": "y"}]}),
    procedure("proc-partial", performedDateTime="2024-03"),  # refused by the import: the day is missing
    procedure("proc-no-zone", performedDateTime="2024-03-05T10:00:00"),  # refused
    procedure("proc-offset", performedDateTime="2024-03-05T10:00:00+15:00"),  # refused
    procedure("proc-display", subject={"reference": "Patient/p1", "display": "Pat"}),
    procedure("proc-absolute", subject={"reference": "https://ehr.example/fhir/Patient/p1"}),
    procedure("proc-period", performedPeriod={"start": "2024-03-05"}),
    procedure("proc-text-code", code={"coding": [{"system": HCPCS, "code": "Q2041"}], "text": "Yescarta"}),
    procedure("proc-padded-code", code=concept(HCPCS, " Q2041")),  # refused
    changed(procedure("proc-no-subject"), lambda r: r.pop("subject")),  # refused
    changed(procedure("proc-no-status"), lambda r: r.pop("status")),  # refused
    administration("med-reference", medicationCodeableConcept=None, medicationReference={"reference": "#m"}),
    changed(administration("med-no-effective"), lambda r: r.pop("effectiveDateTime")),  # refused
    administration("med-dosage", dosage={"text": "one bag"}),
]
UNUSUAL = [{key: value for key, value in resource.items() if value is not None} for resource in UNUSUAL]


def _ndjson(resources: list[dict], codes) -> list:
    return list(parse_ndjson([json.dumps(resource) for resource in resources], codes, today=TODAY))


def _fully_validated(parse_resources, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patched:
        patched.setattr(parse, "PLAIN_READERS", {})
        return parse_resources()


@pytest.mark.parametrize("resource", PLAIN, ids=lambda r: r["id"])
def test_it_reads_a_plain_resource_as_full_validation_does(resource, codes, monkeypatch):
    assert PLAIN_READERS[resource["resourceType"]](resource) is not None
    read = _ndjson([resource], codes)
    assert read == _fully_validated(lambda: _ndjson([resource], codes), monkeypatch)
    assert read


@pytest.mark.parametrize("resource", UNUSUAL, ids=lambda r: r["id"])
def test_it_leaves_any_other_resource_to_full_validation(resource, codes, monkeypatch):
    assert PLAIN_READERS[resource["resourceType"]](resource) is None
    read = _ndjson([resource], codes)
    assert read == _fully_validated(lambda: _ndjson([resource], codes), monkeypatch)
    assert read


def test_it_reads_the_records_and_refusals_of_a_bundle_as_full_validation_does(codes, monkeypatch):
    resources = [*PLAIN, *UNUSUAL]
    urls = [f"https://ehr.example/fhir/{r['resourceType']}/{r['id']}" for r in resources]

    def parsed():
        return parse_bundle(collection(*copy.deepcopy(resources), full_urls=urls), codes, today=TODAY, atomic=False)

    read, validated = parsed(), _fully_validated(parsed, monkeypatch)
    assert (read.patients, read.infusions, read.ignored, read.issues) == (
        validated.patients,
        validated.infusions,
        validated.ignored,
        validated.issues,
    )
    assert read.patients and read.infusions and read.issues


def test_it_reads_the_sample_bulk_export_as_full_validation_does(codes, monkeypatch):
    for name in ("Patient.000.ndjson", "Procedure.000.ndjson"):
        lines = (BULK / name).read_text(encoding="utf-8").splitlines()
        read = list(parse_ndjson(lines, codes, today=TODAY))
        validated = _fully_validated(lambda lines=lines: list(parse_ndjson(lines, codes, today=TODAY)), monkeypatch)
        assert read == validated, name


def test_it_reads_a_plain_patient_and_infusion_to_their_records(codes):
    (_, person), (_, infusion) = _ndjson([patient(), administration()], codes)
    assert isinstance(person, PatientRecord) and isinstance(infusion, InfusionRecord)
    assert (person.mrn, person.given_name, person.family_name, person.phone, person.preferred_language) == (
        "B0000001",
        "Pat Q",
        "Bench1",
        "+1 617 555 0101",
        "es",
    )
    assert person.source == "https://ehr.example/fhir"
    assert (infusion.patient_ref, str(infusion.infusion_date)) == ("p1", "2024-03-05")  # the day as written


def test_it_reports_what_full_validation_refuses_by_element(codes):
    refused = [UNUSUAL[2], UNUSUAL[8], UNUSUAL[-2]]
    issues = [item for _, item in _ndjson(refused, codes)]
    assert [(issue.line, issue.field, issue.message) for issue in issues] == [
        (1, "foo", "unknown element (not in FHIR R4)"),
        (2, "telecom[0].rank", "Input should be greater than or equal to 1"),
        (3, "", "Expect any of field value from this list ['effectiveDateTime', 'effectivePeriod']."),
    ]
    assert all(isinstance(issue, ImportIssue) for issue in issues)
