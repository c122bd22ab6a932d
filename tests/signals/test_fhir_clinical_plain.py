"""A laboratory Observation in the plain shape is read without full validation, to the record full validation gives;
any other Observation is left to full validation, which accepts or refuses it as it always has."""

from __future__ import annotations

import copy

import pytest

from surveillance.imports.fhir import clinical
from surveillance.imports.fhir.clinical import clinical_records, plain_observation
from tests.signals.test_fhir_clinical import UCUM, observation

INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def bench_count(rid: str, value, unit: str = "10*3/uL", **extra) -> dict:
    """A blood-count Observation as ``bench/import_results.py`` writes one: encounter-linked, with its range."""
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/p1-enc-0"},
        "effectiveDateTime": "2025-10-31T23:30:00-05:00",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "referenceRange": [{"low": {"value": 1.5, "unit": unit}, "high": {"value": 7.5, "unit": unit}}],
        **extra,
    }


PLAIN = [
    bench_count("plain-1", 3.8),
    bench_count("plain-int", 4),
    bench_count("plain-exponent", 1.5e-07),
    bench_count("plain-other-unit", 3800, unit="/uL"),
    bench_count("plain-low-flag", 0.4, interpretation=[{"coding": [{"system": INTERPRETATION, "code": "L"}]}]),
    bench_count("plain-amended", 3.8, status="amended"),
    bench_count("plain-preliminary", 3.8, status="preliminary"),
    observation("synthea-wbc", "6690-2", 6.8, "10*3/uL"),
    observation("synthea-utc", "718-7", 14.1, "g/dL", when="2025-10-31T02:00:00Z"),
]


def _unusual(change) -> dict:
    resource = bench_count("unusual", 3.8)
    change(resource)
    return resource


UNUSUAL = [
    _unusual(lambda r: r.update(note=[{"text": "haemolysed"}])),  # an element the plain shape does not know
    _unusual(lambda r: r.update(foo=1)),  # one FHIR does not know: refused by full validation
    _unusual(lambda r: r["valueQuantity"].update(value=True)),  # refused
    _unusual(lambda r: r["valueQuantity"].update(value="3.8")),  # accepted by full validation, as a decimal
    _unusual(lambda r: r["valueQuantity"].update(value=10**20)),
    _unusual(lambda r: r["valueQuantity"].update(unit="")),  # refused
    _unusual(lambda r: r["valueQuantity"].update(unit="µL")),
    _unusual(lambda r: r["valueQuantity"].update(comparator="<")),
    _unusual(lambda r: r["code"]["coding"][0].update(code=" 751-8")),  # refused
    _unusual(lambda r: r["code"]["coding"][0].update(display="")),  # refused
    _unusual(lambda r: r.update(effectiveDateTime="2025-10-31T09:30:00")),  # no zone: refused
    _unusual(lambda r: r.update(effectiveDateTime="2025-10-31T09:30:00+15:00")),  # beyond FHIR's offsets: refused
    _unusual(lambda r: r.update(effectiveDateTime="2025-10-31")),
    _unusual(lambda r: r.update(effectiveDateTime="2025-10")),
    _unusual(lambda r: r.update(effectivePeriod={"start": "2025-10-31T09:30:00Z"})),  # two effective[x]: refused
    _unusual(lambda r: r.update(subject={"reference": "Patient/p 1"})),
    _unusual(lambda r: r.update(referenceRange=[{}])),
    _unusual(lambda r: r.update(category=[])),
    _unusual(lambda r: r.update(_status={"extension": []})),
    _unusual(lambda r: r.pop("status")),  # refused: status is required
]


def _fully_validated(resources: list[dict], monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patched:
        patched.setattr(clinical, "plain_observation", lambda resource: None)
        return clinical_records(copy.deepcopy(resources))


@pytest.mark.parametrize("resource", PLAIN, ids=lambda r: r["id"])
def test_it_reads_a_plain_observation_as_full_validation_does(resource, monkeypatch):
    assert plain_observation(resource) is not None
    parsed, validated = clinical_records([resource]), _fully_validated([resource], monkeypatch)
    assert (parsed.labs, parsed.ignored) == (validated.labs, validated.ignored)
    assert parsed.labs or parsed.ignored


@pytest.mark.parametrize("resource", UNUSUAL)
def test_it_leaves_any_other_observation_to_full_validation(resource, monkeypatch):
    assert plain_observation(resource) is None
    parsed, validated = clinical_records([resource]), _fully_validated([resource], monkeypatch)
    assert (parsed.labs, parsed.ignored) == (validated.labs, validated.ignored)
    assert parsed.labs or parsed.ignored


def test_it_refuses_what_full_validation_refuses():
    parsed = clinical_records([UNUSUAL[1], UNUSUAL[2], UNUSUAL[-1]])
    assert parsed.labs == []
    assert [item.reason for item in parsed.ignored] == [
        "not valid FHIR R4 (foo)",
        "not valid FHIR R4 (valueQuantity.value)",
        "not valid FHIR R4 (status)",
    ]
