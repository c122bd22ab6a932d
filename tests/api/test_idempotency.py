"""Idempotency-Key on POSTs: a retried request answers as the first time and writes nothing more."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from surveillance.api.idempotency import idempotency_keys_purge
from surveillance.integrations.tasks import purge_idempotency_keys
from surveillance.models import IdempotencyKey, Infusion, Patient


def _infusion_body(patient) -> dict:
    day = dt.date.today() - dt.timedelta(days=10)
    return {"patient": patient.pk, "product": "kymriah", "infusion_date": day.isoformat()}


def test_it_answers_a_retried_infusion_post_with_the_first_answer(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    first = api_a.post("/api/v1/infusions", _infusion_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    retry = api_a.post("/api/v1/infusions", _infusion_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == retry.status_code == 201, retry.content
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert Infusion.objects.filter(patient=patient).count() == 1


def test_it_refuses_the_same_key_with_another_body(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    api_a.post("/api/v1/infusions", _infusion_body(patient), format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    other = {**_infusion_body(patient), "product": "yescarta"}
    response = api_a.post("/api/v1/infusions", other, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Infusion.objects.filter(patient=patient).count() == 1


def test_it_keeps_keys_per_token(api_a, api_b, centre_a, centre_b, make_patient):
    first = api_a.post("/api/v1/patients", {"mrn": "A-1"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    second = api_b.post("/api/v1/patients", {"mrn": "B-1"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second
    assert Patient.objects.filter(mrn__in=["A-1", "B-1"]).count() == 2


def test_it_replays_an_import(api_a, centre_a):
    header = "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number"
    csv = f"{header}\nA-9,Sam,Lee,1960-01-02,f,,,en,kymriah,2025-06-01,L1\n"
    first = api_a.generic("POST", "/api/v1/import/csv", csv, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="imp")
    retry = api_a.generic("POST", "/api/v1/import/csv", csv, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="imp")
    assert first.status_code == retry.status_code == 200, retry.content
    assert retry.json() == first.json() and first.json()["patients"]["created"] == 1
    assert retry["Idempotent-Replayed"] == "true"


def test_it_handles_a_request_without_a_key_every_time(api_a, centre_a):
    api_a.post("/api/v1/patients", {"mrn": "A-2"}, format="json")
    again = api_a.post("/api/v1/patients", {"mrn": "A-2"}, format="json")
    assert again.status_code == 400  # handled again: the MRN is now taken
    assert not IdempotencyKey.objects.exists()


def test_it_does_not_keep_an_answer_a_retry_could_change(api_a, planned_a):
    _, infusion = planned_a
    visit = infusion.visits.filter(status="scheduled").order_by("due_date").last()
    api_a.post(f"/api/v1/visits/{visit.pk}/cancel", {"reason": "moved away"}, format="json")
    conflict = api_a.post(
        f"/api/v1/visits/{visit.pk}/cancel", {"reason": "again"}, format="json", HTTP_IDEMPOTENCY_KEY="c"
    )
    assert conflict.status_code == 409
    assert not IdempotencyKey.objects.filter(key="c").exists()


def test_it_refuses_a_malformed_key(api_a, centre_a):
    response = api_a.post("/api/v1/patients", {"mrn": "A-3"}, format="json", HTTP_IDEMPOTENCY_KEY="x" * 256)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]
    assert not Patient.objects.filter(mrn="A-3").exists()


def test_it_purges_keys_past_their_retention(api_a, centre_a, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "IDEMPOTENCY_KEY_HOURS": 24}
    api_a.post("/api/v1/patients", {"mrn": "A-4"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api_a.post("/api/v1/patients", {"mrn": "A-5"}, format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(hours=25))
    assert purge_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert idempotency_keys_purge() == 0


def test_it_replays_an_ndjson_import_read_as_a_stream(api_a, centre_a):
    import json

    patient = {"resourceType": "Patient", "id": "nd-1", "identifier": [{"system": "urn:mrn", "value": "ND-1"}]}
    body = json.dumps(patient) + "\n"
    send = {"content_type": "application/fhir+ndjson", "HTTP_IDEMPOTENCY_KEY": "nd"}
    first = api_a.generic("POST", "/api/v1/import/fhir", body, **send)
    retry = api_a.generic("POST", "/api/v1/import/fhir", body, **send)
    assert first.status_code == retry.status_code == 200, first.content
    assert first.json()["patients"]["created"] == 1 and retry.json() == first.json()
    assert Patient.objects.filter(source_id="nd-1").count() == 1


def test_it_schedules_the_purge_with_beat(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert purge_idempotency_keys.name in tasks
