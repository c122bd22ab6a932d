"""The CarePlan export refers to the patient with a valid FHIR reference, whatever the source id looks like."""

from __future__ import annotations

import re

from fhir.resources.R4B.bundle import Bundle

from surveillance.models import Patient

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _subjects(bundle: dict) -> list[dict]:
    resources = [entry["resource"] for entry in bundle["entry"]]
    careplan = resources[0]
    return [careplan["subject"]] + [p["actor"] for r in resources[1:] for p in r["participant"]]


def test_it_refers_by_identifier_when_the_source_id_is_a_urn(api_a, planned_a):
    patient, _ = planned_a
    urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    Patient.objects.filter(pk=patient.pk).update(source_id=urn)
    bundle = api_a.get(f"/api/v1/patients/{patient.pk}/careplan").json()
    Bundle.model_validate(bundle)
    expected = {"identifier": {"system": "urn:cartwatch:patient", "value": str(patient.pk)}}
    assert _subjects(bundle) and all(subject == expected for subject in _subjects(bundle))
    assert urn not in str(bundle)


def test_it_refers_by_the_ehr_id_when_it_is_a_fhir_id(api_a, planned_a):
    patient, _ = planned_a
    bundle = api_a.get(f"/api/v1/patients/{patient.pk}/careplan").json()
    for subject in _subjects(bundle):
        kind, _, ident = subject["reference"].partition("/")
        assert kind == "Patient" and FHIR_ID.fullmatch(ident)
