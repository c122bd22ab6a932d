"""Synthea-shaped Bundles for identity tests: a real exported Patient and hundreds of its real unrelated resources
(encounters, conditions, procedures from the shared bulk export), re-pointed at the patient, plus one CAR-T
infusion. Each Bundle comes from one server: its entries' fullUrls are that server's absolute URLs."""

from __future__ import annotations

import copy
import datetime as dt
import json
from functools import cache

from tests.imports.conftest import BULK, HCPCS, concept

MR = concept("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")


@cache
def _lines(name: str) -> tuple[str, ...]:
    return tuple(line for line in (BULK / name).read_text(encoding="utf-8").splitlines() if line.strip())


def synthea_patient(patient_id: str, family: str, birth_date: str, *, mrn: str | None = None, system: str = "") -> dict:
    """The first Patient of the Synthea export, with its id, family name and birth date replaced; ``mrn``: its MR
    identifier (``system`` its namespace), None for a Patient sent without any identifier."""
    patient = json.loads(_lines("Patient.000.ndjson")[1])
    patient.update(id=patient_id, birthDate=birth_date)
    patient.pop("deceasedDateTime", None)
    patient["name"] = [{"use": "official", "family": family, "given": ["Sam"]}]
    patient["identifier"] = (
        [{"type": MR, "system": system or "http://hospital.example.org/mrn", "value": mrn}] if mrn else []
    )
    return patient


def car_t_procedure(procedure_id: str, patient_id: str, days_ago: int = 40) -> dict:
    return {
        "resourceType": "Procedure",
        "id": procedure_id,
        "status": "completed",
        "code": concept(HCPCS, "Q2041"),  # Yescarta
        "subject": {"reference": f"Patient/{patient_id}"},
        "performedDateTime": (dt.date.today() - dt.timedelta(days=days_ago)).isoformat(),
    }


def unrelated(patient_id: str, count: int) -> list[dict]:
    """``count`` real Encounters, Conditions and Procedures of the export (none CAR-T), now the patient's."""
    resources = []
    names = ("Encounter.000.ndjson", "Condition.000.ndjson", "Procedure.000.ndjson")
    pool = [line for name in names for line in _lines(name)]
    for line in pool[:count]:
        resource = json.loads(line)
        resource["subject"] = {"reference": f"Patient/{patient_id}"}
        resources.append(resource)
    return resources


def server_bundle(server: str, patient: dict, *others: dict, noise: int = 300) -> dict:
    """A searchset Bundle from ``server``: the patient, ``noise`` unrelated resources and ``others``, each entry
    with its absolute fullUrl on that server."""
    resources = [patient, *unrelated(patient["id"], noise), *others]
    entries = [
        {"fullUrl": f"{server}/{resource['resourceType']}/{resource['id']}", "resource": copy.deepcopy(resource)}
        for resource in resources
    ]
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}
