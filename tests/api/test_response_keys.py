"""The keys of every response are pinned: a new field (and with it, possibly, patient data) cannot appear unnoticed."""

from __future__ import annotations

import datetime as dt

from surveillance.care import reporting
from surveillance.models import Protocol, Reminder, WebhookEndpoint

PATIENT = {
    "id", "centre", "mrn", "given_name", "family_name", "birth_date", "sex", "email", "phone", "preferred_language",
    "time_zone", "contact_consent", "sms_consent", "preferred_channel", "status", "status_date", "status_reason",
    "ladder_stage", "source_system", "source_id", "created_at", "updated_at",
}  # fmt: skip
INFUSION = {
    "id", "patient", "product", "infusion_date", "indication", "lot_number", "prior_lines", "protocol",
    "superseded_by", "risk_flags", "variant_reasons", "source_system", "source_id", "created_at", "updated_at",
}  # fmt: skip
VISIT = {
    "id", "patient", "centre", "infusion", "rule_code", "occurrence", "label", "kind", "due_date", "window_start",
    "window_end", "assessments", "assessments_display", "status", "status_reason", "completed_on", "results",
    "sequence", "updated_at",
}  # fmt: skip
CENTRE = {"id", "code", "name", "time_zone"}
PROTOCOL = {"id", "code", "version", "name", "variant", "status", "description", "activated_at", "rules"}
RULE = {
    "position", "code", "label", "kind", "offset_amount", "offset_unit", "repeat_every", "repeat_until", "lifelong",
    "window_before_days", "window_after_days", "assessments", "applies_to", "condition", "source",
}  # fmt: skip
REMINDER = {
    "id", "visit", "audience", "purpose", "days_before", "channel", "send_after", "status", "attempts", "sent_at",
    "outcome_reason", "last_smtp_code", "last_error",
}  # fmt: skip
EVENT = {
    "id", "patient", "infusion", "diagnosis_date", "malignancy_type", "confirmed", "description",
    "transgene_status", "recorded_at", "reporting_steps",
}  # fmt: skip
STEP = {"kind", "due_date", "completed_at", "reference"}
WEBHOOK = {"id", "centre", "url", "events", "active", "description", "created_at"}
PAGE = {"next", "previous", "results"}


def keys(response) -> set[str]:
    assert response.status_code in (200, 201), response.content
    return set(response.json())


def test_it_pins_the_patient_keys(api_a, planned_a):
    patient, _ = planned_a
    assert keys(api_a.get(f"/api/v1/patients/{patient.pk}")) == PATIENT
    page = api_a.get("/api/v1/patients").json()
    assert set(page) == PAGE and set(page["results"][0]) == PATIENT


def test_it_pins_the_infusion_keys(api_a, planned_a):
    _, infusion = planned_a
    assert keys(api_a.get(f"/api/v1/infusions/{infusion.pk}")) == INFUSION
    assert set(api_a.get("/api/v1/infusions").json()["results"][0]) == INFUSION


def test_it_pins_the_visit_keys(api_a, planned_a):
    visit = planned_a[1].visits.first()
    assert keys(api_a.get(f"/api/v1/visits/{visit.pk}")) == VISIT
    assert set(api_a.get("/api/v1/visits").json()["results"][0]) == VISIT


def test_it_pins_the_centre_keys(api_a, centre_a):
    assert keys(api_a.get(f"/api/v1/centres/{centre_a.pk}")) == CENTRE


def test_it_pins_the_protocol_and_rule_keys(api_a):
    body = api_a.get(f"/api/v1/protocols/{Protocol.objects.first().pk}").json()
    assert set(body) == PROTOCOL and set(body["rules"][0]) == RULE


def test_it_pins_the_reminder_keys(api_a, planned_a):
    reminder = Reminder.objects.filter(visit__infusion=planned_a[1]).first()
    assert keys(api_a.get(f"/api/v1/reminders/{reminder.pk}")) == REMINDER


def test_it_pins_the_malignancy_event_keys(api_a, planned_a):
    event = reporting.malignancy_event_record(planned_a[1], diagnosis_date=dt.date.today(), malignancy_type="mds_aml")
    body = api_a.get(f"/api/v1/malignancy-events/{event.pk}").json()
    assert set(body) == EVENT and set(body["reporting_steps"][0]) == STEP


def test_it_pins_the_webhook_keys_and_shows_the_secret_once(api_a, centre_a):
    created = api_a.post("/api/v1/webhooks", {"url": "https://ehr.example.org/cartwatch"}, format="json")
    assert keys(created) == WEBHOOK | {"secret"}
    assert created.json()["secret"] == WebhookEndpoint.objects.get().secret
    assert keys(api_a.get(f"/api/v1/webhooks/{created.json()['id']}")) == WEBHOOK


def test_it_pins_the_error_keys(api_a):
    problem = {"type", "title", "status", "code", "detail"}  # RFC 9457, with code (and fields) as extensions
    assert set(api_a.get("/api/v1/patients/999999").json()) == problem
    assert set(api_a.post("/api/v1/patients", {}, format="json").json()) == {*problem, "fields"}
