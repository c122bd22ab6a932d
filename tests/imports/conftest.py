"""Fixtures for the pure FHIR/CSV parsers: the shared EHR samples (beside the repo) and the CAR-T code list."""

from __future__ import annotations

import copy
import datetime as dt
import json
from functools import cache
from pathlib import Path

import pytest

from surveillance.imports.fhir.codes import CarTCodeIndex

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "ehr-samples"
OFFICIAL = SAMPLES / "fhir-r4-official"
BULK = SAMPLES / "bulk-ndjson"
CODES_CSV = SAMPLES / "car_t_codes.csv"
TODAY = dt.date(2025, 6, 1)

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"


@cache
def _official_text(name: str) -> str:
    return (OFFICIAL / name).read_text(encoding="utf-8")


def official(name: str) -> dict:
    """A fresh copy of one official HL7 example, safe to modify."""
    return copy.deepcopy(json.loads(_official_text(name)))


def concept(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def collection(*resources: dict, full_urls: list[str] | None = None) -> dict:
    """A collection Bundle holding the resources (with fullUrls when given)."""
    entries = []
    for index, resource in enumerate(resources):
        entry = {"resource": resource}
        if full_urls and full_urls[index]:
            entry["fullUrl"] = full_urls[index]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


@pytest.fixture(scope="session")
def codes() -> CarTCodeIndex:
    if not CODES_CSV.exists():
        pytest.fail(f"shared samples missing: {SAMPLES} (CI clones shared/ beside the repo)")
    return CarTCodeIndex.from_csv(CODES_CSV)


def cohort_ndjson(count: int, *, prefix: str = "pat") -> str:
    """Bulk Data NDJSON of ``count`` patients, each followed by the CAR-T infusion that plans their schedule."""
    today = dt.date.today()
    lines = []
    for n in range(count):
        lines.append(
            {
                "resourceType": "Patient",
                "id": f"{prefix}-{n}",
                "identifier": [
                    {
                        "type": concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
                        "system": "urn:test:mrn",
                        "value": f"{prefix.upper()}{n:05d}",
                    }
                ],
                "name": [{"family": "Doe", "given": ["Sam"]}],
                "birthDate": "1960-02-03",
            }
        )
        lines.append(
            {
                "resourceType": "Procedure",
                "id": f"{prefix}-inf-{n}",
                "status": "completed",
                "code": concept(HCPCS, "Q2041"),
                "subject": {"reference": f"Patient/{prefix}-{n}"},
                "performedDateTime": (today - dt.timedelta(days=30 + n % 200)).isoformat(),
            }
        )
    return "".join(json.dumps(line) + "\n" for line in lines)
