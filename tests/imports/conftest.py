"""Fixtures for the pure FHIR/CSV parsers: the shared EHR samples (beside the repo) and the CAR-T code list; for
the EHR pulls, a loopback Bulk Data server and a connection to it."""

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


def mrn_patient(source_id: str, mrn: str) -> dict:
    """A Patient identified by its MRN (identifier type MR), as the cohorts of these tests send them."""
    return {
        "resourceType": "Patient",
        "id": source_id,
        "identifier": [
            {
                "type": concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
                "system": "urn:test:mrn",
                "value": mrn,
            }
        ],
        "name": [{"family": "Doe", "given": ["Sam"]}],
        "birthDate": "1960-02-03",
    }


def car_t_procedure(source_id: str, patient_id: str, performed: dt.date) -> dict:
    """A completed CAR-T infusion of the patient as a Procedure, coded with Yescarta's HCPCS code."""
    return {
        "resourceType": "Procedure",
        "id": source_id,
        "status": "completed",
        "code": concept(HCPCS, "Q2041"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "performedDateTime": performed.isoformat(),
    }


def cohort_ndjson(count: int, *, prefix: str = "pat") -> str:
    """Bulk Data NDJSON of ``count`` patients, each followed by the CAR-T infusion that plans their schedule."""
    today = dt.date.today()
    lines = []
    for n in range(count):
        lines.append(mrn_patient(f"{prefix}-{n}", f"{prefix.upper()}{n:05d}"))
        lines.append(car_t_procedure(f"{prefix}-inf-{n}", f"{prefix}-{n}", today - dt.timedelta(days=30 + n % 200)))
    return "".join(json.dumps(line) + "\n" for line in lines)


# --- EHR pulls: a loopback Bulk Data server and a connection of centre A to it --------------------------------------
@pytest.fixture
def pull_settings(settings):
    """Retries without waiting, two tries a request: a failure shows in a test within a second."""
    settings.CARTWATCH = {
        **settings.CARTWATCH,
        "EHR_PULL_HTTP_ATTEMPTS": 2,
        "EHR_PULL_HTTP_RETRY_SECONDS": 0,
        "EHR_PULL_WAIT_SECONDS": 30,
        "EHR_PULL_TIMEOUT_SECONDS": 10,
    }
    return settings


@pytest.fixture
def rsa_pem(tmp_path):
    """A fresh RS384 signing key, its PEM in a file as a deployment keeps it; returns (key, path)."""
    from cryptography.hazmat.primitives import serialization

    from tests.imports.bulk_server import rsa_key

    key = rsa_key()
    path = tmp_path / "ehr-client.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return key, path


@pytest.fixture
def bulk_server(rsa_pem, pull_settings):
    from tests.imports.bulk_server import BulkServer, export_files

    server = BulkServer(rsa_pem[0].public_key(), "RS384", export_files())
    yield server
    server.stop()


@pytest.fixture
def make_connection(centre_a, rsa_pem):
    def make(server, **fields):
        from surveillance.models import EhrConnection
        from tests.imports.bulk_server import CLIENT_ID, KEY_ID

        values = {
            "centre": centre_a,
            "name": "Synthea EHR",
            "fhir_base_url": server.base,
            "token_url": server.token_url,
            "client_id": CLIENT_ID,
            "private_key_ref": str(rsa_pem[1]),
            "key_id": KEY_ID,
            "algorithm": "RS384",
        }
        values.update(fields)
        connection = EhrConnection(**values)
        connection.full_clean()
        connection.save()
        return connection

    return make
