"""An infusion that contradicts the patient's record is a 400 naming the field, and nothing is saved."""

from __future__ import annotations

import datetime as dt
import json

from surveillance.care import lifecycle
from surveillance.models import FollowUpVisit, Infusion, Patient
from tests.imports.conftest import HCPCS, collection, concept, official

DAY = dt.timedelta(days=1)


def post_infusion(client, patient, day: dt.date):
    return client.post(
        "/api/v1/infusions",
        {"patient": patient.pk, "product": "kymriah", "infusion_date": day.isoformat()},
        format="json",
    )


def test_it_refuses_an_infusion_before_the_birth_date(api_a, centre_a, make_patient):
    patient = make_patient(centre_a, birth_date=dt.date.today() - 30 * DAY)
    response = post_infusion(api_a, patient, dt.date.today() - 60 * DAY)
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {"infusion_date": ["is before the patient's birth date"]}
    assert patient.birth_date.isoformat() not in response.content.decode()
    assert not Infusion.objects.exists()


def test_it_refuses_an_infusion_after_the_recorded_death(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    lifecycle.patient_close(patient, status="deceased", on=dt.date.today() - 40 * DAY, reason="Died")
    response = post_infusion(api_a, patient, dt.date.today() - 10 * DAY)
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {"infusion_date": ["is after the patient's recorded date of death"]}
    assert not Infusion.objects.exists() and not FollowUpVisit.objects.exists()


def test_it_refuses_a_new_infusion_for_a_closed_patient(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    lifecycle.patient_close(patient, status="transferred", on=dt.date.today() - 5 * DAY, reason="Moved")
    response = post_infusion(api_a, patient, dt.date.today() - 10 * DAY)
    assert response.status_code == 400
    assert response.json()["fields"] == {"patient": ["the patient's follow-up is closed (transferred)"]}
    assert not Infusion.objects.exists()


def test_it_refuses_a_correction_to_a_date_after_the_recorded_death(api_a, planned_a):
    patient, infusion = planned_a
    lifecycle.patient_close(patient, status="deceased", on=infusion.infusion_date + 5 * DAY, reason="Died")
    response = api_a.patch(
        f"/api/v1/infusions/{infusion.pk}",
        {"infusion_date": (infusion.infusion_date + 10 * DAY).isoformat()},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"infusion_date"}
    assert Infusion.objects.get().infusion_date == infusion.infusion_date


def test_it_answers_a_fhir_import_infused_before_birth_with_an_operation_outcome(api_a, centre_a):
    patient = official("patient-example.json")
    patient["birthDate"] = (dt.date.today() - 30 * DAY).isoformat()
    procedure = official("procedure-example.json")  # subject Patient/example
    procedure["code"] = concept(HCPCS, "Q2041")
    procedure["performedDateTime"] = (dt.date.today() - 60 * DAY).isoformat()
    body = json.dumps(collection(patient, procedure))
    response = api_a.generic("POST", "/api/v1/import/fhir", body, content_type="application/fhir+json")
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    (issue,) = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[1].resource.date"]
    assert issue["diagnostics"].endswith("is before the patient's birth date")
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_refuses_a_birth_date_corrected_to_after_an_infusion(api_a, planned_a):
    patient, infusion = planned_a
    later = (infusion.infusion_date + 5 * DAY).isoformat()
    response = api_a.patch(f"/api/v1/patients/{patient.pk}", {"birth_date": later}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"birth_date": ["is after the date of one of the patient's infusions"]}
    assert Patient.objects.get().birth_date == patient.birth_date
