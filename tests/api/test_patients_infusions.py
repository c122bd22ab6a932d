"""Patients and infusions through the API: strict input, no mass assignment, the schedule planned on creation."""

from __future__ import annotations

import datetime as dt

from surveillance.models import FollowUpVisit, Infusion, Patient


def test_it_registers_a_patient_in_the_tokens_only_centre(api_a, centre_a):
    response = api_a.post(
        "/api/v1/patients", {"mrn": "A-100", "family_name": "Okafor", "birth_date": "1961-02-03"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["centre"] == "a" and response.json()["status"] == "active"


def test_it_ignores_status_and_audit_fields_in_the_input(api_a, centre_a):
    response = api_a.post(
        "/api/v1/patients",
        {"mrn": "A-101", "status": "deceased", "ladder_stage": "lost", "created_at": "2001-01-01T00:00:00Z"},
        format="json",
    )
    patient = Patient.objects.get(pk=response.json()["id"])
    assert (patient.status, patient.ladder_stage, patient.created_at.year) == (
        "active",
        "on_track",
        dt.date.today().year,
    )


def test_it_refuses_to_move_a_patient_to_another_centre(api_a, planned_a, centre_b):
    patient, _ = planned_a
    response = api_a.patch(f"/api/v1/patients/{patient.pk}", {"centre": "b"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"centre": ["Object with code=b does not exist."]}
    assert Patient.objects.get(pk=patient.pk).centre.code == "a"


def test_it_names_every_bad_field(api_a, centre_a):
    response = api_a.post(
        "/api/v1/patients",
        {"mrn": "", "birth_date": "1850-01-01", "sex": "robot", "email": "not-an-email", "time_zone": "Mars/Olympus"},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["fields"]) == {"mrn", "birth_date", "sex", "email", "time_zone"}


def test_it_refuses_a_duplicate_mrn_with_a_field_message(api_a, planned_a):
    response = api_a.post("/api/v1/patients", {"mrn": planned_a[0].mrn}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["mrn"] == ["another patient of this centre has this MRN"]


def test_it_answers_malformed_json_with_400_not_500(api_a, centre_a):
    response = api_a.generic("POST", "/api/v1/patients", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_it_plans_the_schedule_of_a_new_infusion(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    day = dt.date.today() - dt.timedelta(days=10)
    response = api_a.post(
        "/api/v1/infusions",
        {"patient": patient.pk, "product": "kymriah", "infusion_date": day.isoformat(), "protocol": "x"},
        format="json",
    )
    assert response.status_code == 201, response.content
    infusion = Infusion.objects.get(pk=response.json()["id"])
    assert infusion.protocol is not None
    assert FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").count() > 10


def test_it_replans_when_the_infusion_date_is_corrected(api_a, planned_a):
    _, infusion = planned_a
    visit = FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").order_by("due_date").last()
    new_day = infusion.infusion_date + dt.timedelta(days=7)
    response = api_a.patch(f"/api/v1/infusions/{infusion.pk}", {"infusion_date": new_day.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    visit.refresh_from_db()
    assert visit.sequence == 1  # moved by the re-plan


def test_it_refuses_absurd_infusion_dates(api_a, planned_a):
    patient, _ = planned_a
    for day in ("1999-01-01", (dt.date.today() + dt.timedelta(days=30)).isoformat(), "2024-02-30"):
        response = api_a.post(
            "/api/v1/infusions", {"patient": patient.pk, "product": "yescarta", "infusion_date": day}, format="json"
        )
        assert response.status_code == 400 and "infusion_date" in response.json()["fields"], day


def test_it_refuses_an_unknown_product(api_a, planned_a):
    response = api_a.post(
        "/api/v1/infusions",
        {"patient": planned_a[0].pk, "product": "chemo", "infusion_date": "2025-01-01"},
        format="json",
    )
    assert response.json()["fields"] == {
        "product": ["Not a product code of the catalogue (e.g. yescarta, kymriah, carvykti)."]
    }
