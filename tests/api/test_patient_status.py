"""A patient's status through the API: a death, withdrawal or transfer closes follow-up; lost keeps it."""

from __future__ import annotations

import datetime as dt

from surveillance.models import AuditEntry, FollowUpVisit, Patient, Reminder

KEYS = {
    "id", "centre", "mrn", "given_name", "family_name", "birth_date", "sex", "email", "phone", "preferred_language",
    "time_zone", "contact_consent", "sms_consent", "preferred_channel", "status", "status_date", "status_reason",
    "ladder_stage", "source_system", "source_id", "created_at", "updated_at",
}  # fmt: skip


def _yesterday() -> str:
    return (dt.date.today() - dt.timedelta(days=1)).isoformat()


def test_it_records_a_death_and_closes_follow_up(api_a, planned_a):
    patient, infusion = planned_a
    response = api_a.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "deceased", "date": _yesterday(), "reason": "Death notice from the GP"},
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == KEYS
    assert (body["status"], body["status_date"], body["status_reason"]) == (
        "deceased",
        _yesterday(),
        "Death notice from the GP",
    )
    assert not FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").exists()
    assert not Reminder.objects.filter(visit__infusion=infusion, status="pending").exists()
    entry = AuditEntry.objects.get(action="close", object_id=str(patient.pk))
    assert entry.actor_label == "token:epic-a" and entry.changes["reason"] == "Death notice from the GP"


def test_it_marks_a_patient_lost_and_keeps_the_schedule(api_a, planned_a):
    patient, infusion = planned_a
    open_visits = FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").count()
    response = api_a.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "lost_to_follow_up", "date": _yesterday(), "reason": "Moved abroad, no address"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["ladder_stage"]) == ("lost_to_follow_up", "lost")
    assert FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").count() == open_visits
    assert AuditEntry.objects.filter(action="ladder", object_id=str(patient.pk), changes__to="lost").exists()


def test_it_answers_409_when_follow_up_is_already_closed(api_a, planned_a):
    patient, _ = planned_a
    body = {"status": "withdrawn", "date": _yesterday(), "reason": "Consent withdrawn"}
    api_a.post(f"/api/v1/patients/{patient.pk}/status", body, format="json")
    again = api_a.post(f"/api/v1/patients/{patient.pk}/status", {**body, "status": "transferred"}, format="json")
    assert again.status_code == 409
    assert Patient.objects.get(pk=patient.pk).status == "withdrawn"


def test_it_names_each_bad_field(api_a, planned_a):
    patient, _ = planned_a
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    response = api_a.post(f"/api/v1/patients/{patient.pk}/status", {"status": "active", "date": future}, format="json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"status", "date", "reason"}
    assert response.json()["fields"]["date"] == ["cannot be in the future"]
    before_birth = api_a.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "deceased", "date": "1960-01-01", "reason": "x"},
        format="json",
    )
    assert before_birth.json()["fields"] == {"date": ["cannot be before the patient's birth date"]}
    assert Patient.objects.get(pk=patient.pk).status == "active"


def test_it_does_not_let_another_centre_touch_the_patient(api_b, planned_a):
    patient, _ = planned_a
    response = api_b.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "deceased", "date": _yesterday(), "reason": "x"},
        format="json",
    )
    missing = api_b.post(
        "/api/v1/patients/999999/status", {"status": "deceased", "date": _yesterday(), "reason": "x"}, format="json"
    )
    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json()
    assert Patient.objects.get(pk=patient.pk).status == "active"


def test_it_refuses_a_read_only_token(readonly_a, planned_a):
    patient, _ = planned_a
    response = readonly_a.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "deceased", "date": _yesterday(), "reason": "x"},
        format="json",
    )
    assert response.status_code == 403
    assert Patient.objects.get(pk=patient.pk).status == "active"
