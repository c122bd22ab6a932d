"""No patient data in any log line, error body or email subject, over a run of the API, the admin and the workers.

A sentinel patient with distinctive identifiers is planted at centre A; then the API (as an integration token and as
a staff session), the admin, EHR imports with bad input that quotes the sentinel, the reminder dispatcher sending to
a real SMTP server on loopback, the daily sweep, the weekly digest and webhook delivery all run with every logger
at DEBUG. None of the sentinel's strings may appear in a captured log record, in a 4xx/5xx body (or the error list
of an import report), in a Subject header or in a webhook's body.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from surveillance.api.auth import api_token_create
from surveillance.integrations import webhooks
from surveillance.models import Patient, ReminderStatus, WebhookDelivery
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import dispatch, sweep
from tests.imports.conftest import collection
from tests.integrations.test_webhooks import Receiver
from tests.phi.sentinel import (
    BIRTH,
    EMAIL,
    FAMILY,
    GIVEN,
    MRN,
    PHONE,
    Responses,
    car_t_procedure,
    fhir_patient,
    leaks,
    subjects,
)
from tests.reminders.conftest import add_reminder

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"


def drive_api(calls: Responses, sentinel, foreign_patient, token: APIClient, staff: APIClient) -> None:
    for label, client in (("token", token), ("staff", staff)):
        calls.keep(f"{label} list", client.get("/api/v1/patients"), expect=200)
        calls.keep(f"{label} search", client.get("/api/v1/patients", {"mrn": MRN}))
        calls.keep(f"{label} detail", client.get(f"/api/v1/patients/{sentinel.pk}"), expect=200)
        calls.keep(f"{label} foreign", client.get(f"/api/v1/patients/{foreign_patient.pk}"), expect=404)
        calls.keep(f"{label} foreign write", client.patch(f"/api/v1/patients/{foreign_patient.pk}", {"mrn": MRN}))
        calls.keep(f"{label} visits", client.get("/api/v1/visits", {"patient": sentinel.pk}))
    calls.keep(
        "patient 400",
        token.post(
            "/api/v1/patients",
            {
                "mrn": MRN,
                "given_name": GIVEN * 20,
                "family_name": FAMILY * 20,
                "email": f"{GIVEN} {FAMILY} at home",
                "phone": PHONE * 5,
                "birth_date": f"{BIRTH}T99",
                "sex": FAMILY,
                "time_zone": f"{FAMILY}/{GIVEN}",
                "preferred_language": GIVEN,
            },
            format="json",
        ),
        expect=400,
    )
    calls.keep("duplicate MRN", token.post("/api/v1/patients", {"mrn": MRN}, format="json"), expect=400)
    calls.keep(
        "patient patch 400",
        token.patch(
            f"/api/v1/patients/{sentinel.pk}", {"email": f"{EMAIL}@@", "birth_date": "2999-01-01"}, format="json"
        ),
        expect=400,
    )
    calls.keep(
        "infusion 400",
        token.post(
            "/api/v1/infusions",
            {"patient": sentinel.pk, "product": "yescarta", "infusion_date": "1950-01-01", "indication": FAMILY},
            format="json",
        ),
        expect=400,
    )
    calls.keep(
        "infusion of a foreign patient",
        token.post(
            "/api/v1/infusions",
            {"patient": foreign_patient.pk, "product": "yescarta", "infusion_date": timezone.localdate().isoformat()},
            format="json",
        ),
        expect=400,
    )
    calls.keep("malformed json", token.generic("POST", "/api/v1/patients", f'{{"mrn": "{MRN}"', "application/json"))


def drive_imports(calls: Responses, token: APIClient) -> None:
    recent = (timezone.localdate() - dt.timedelta(days=30)).isoformat()

    def bundle(*resources):
        body = json.dumps(collection(*resources))
        return token.generic("POST", "/api/v1/import/fhir", body, content_type=FHIR_JSON)

    calls.keep("bundle bad date", bundle(fhir_patient(), car_t_procedure(f"{BIRTH}-{FAMILY}")), expect=400)
    calls.keep("bundle bad name", bundle(fhir_patient(name=f"{GIVEN} {FAMILY}"), car_t_procedure(recent)))
    calls.keep("bundle bad gender", bundle(fhir_patient(gender=FAMILY), car_t_procedure(recent)))
    calls.keep("bundle bad birth date", bundle(fhir_patient(birthDate=f"{BIRTH}x"), car_t_procedure(recent)))
    calls.keep(
        "bundle not a bundle", token.generic("POST", "/api/v1/import/fhir", json.dumps(fhir_patient()), FHIR_JSON)
    )
    lines = [
        "{broken " + f"{GIVEN} {FAMILY} {MRN}",
        json.dumps(fhir_patient(id="a", birthDate="3000-01-01")),
        json.dumps(fhir_patient(id="b", gender=FAMILY)),
        json.dumps(car_t_procedure(recent) | {"subject": {"reference": "Patient/unknown", "display": FAMILY}}),
        json.dumps(fhir_patient(id="c", telecom=[{"system": "email", "value": f"{EMAIL} {FAMILY}"}])),
    ]
    calls.keep("ndjson", token.generic("POST", "/api/v1/import/fhir", "\n".join(lines) + "\n", content_type=NDJSON))
    header = (
        "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"
    )
    rows = [
        f"{MRN},{GIVEN},{FAMILY},{BIRTH},f,{EMAIL},{PHONE},en,{FAMILY},{recent},L1",
        f"{MRN}-2,{GIVEN},{FAMILY},{BIRTH}x,{GIVEN},{GIVEN} {FAMILY},{PHONE},{FAMILY},yescarta,2031-01-01,",
        f"{MRN}-3,{GIVEN * 30},{FAMILY},{BIRTH},f,{EMAIL},{PHONE * 3},en,yescarta,{BIRTH},",
    ]
    for n, row in enumerate(rows):
        csv = (header + row + "\n").encode()
        calls.keep(f"csv {n}", token.generic("POST", "/api/v1/import/csv", csv, content_type="text/csv"), expect=400)


def drive_admin(calls: Responses, sentinel, foreign_patient, staff: Client) -> None:
    changelist = reverse("admin:surveillance_patient_changelist")
    for query in (FAMILY, MRN, EMAIL, f"{GIVEN} {FAMILY}"):
        calls.keep(f"admin search {query}", staff.get(changelist, {"q": query}), expect=200)
    calls.keep("admin patient page", staff.get(reverse("admin:surveillance_patient_change", args=[sentinel.pk])))
    foreign = reverse("admin:surveillance_patient_change", args=[foreign_patient.pk])
    calls.keep("admin foreign patient", staff.get(foreign, follow=True))
    calls.keep("admin bad filter", staff.get(changelist, {"family_name": FAMILY, "nonsense": GIVEN}, follow=True))
    calls.keep("admin 404", staff.get("/admin/surveillance/no-such-page/"))
    calls.keep(
        "admin bad change",
        staff.post(
            reverse("admin:surveillance_patient_change", args=[sentinel.pk]),
            {"mrn": "", "given_name": GIVEN, "family_name": FAMILY, "email": f"{EMAIL}@@", "birth_date": f"{BIRTH}x"},
        ),
    )


def drive_workers(sentinel, open_visit, smtp_settings, receiver, token: APIClient) -> list[str]:
    token.post("/api/v1/webhooks", {"url": receiver.url}, format="json")
    now = timezone.now()
    today = timezone.localdate(now, sentinel.centre.tz)
    upcoming = open_visit(sentinel, today, occurrence=900)
    add_reminder(upcoming, now - dt.timedelta(minutes=5))
    overdue = open_visit(sentinel, today - dt.timedelta(days=9), occurrence=901)
    add_reminder(overdue, now - dt.timedelta(minutes=5), audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE)
    for n in range(3):  # windows long closed: the sweep marks them missed and moves the patient down the ladder
        open_visit(sentinel, today - dt.timedelta(days=60 + 30 * n), occurrence=902 + n)
    dispatch.dispatch_run(now)
    sweep.daily_sweep(now)
    dispatch.dispatch_run(now + dt.timedelta(days=1))
    sweep.care_team_digest_send(now)
    webhooks.webhooks_deliver_due(budget_seconds=5)
    assert smtp_settings.messages, "the dispatcher sent nothing: the run did not exercise the mail path"
    assert WebhookDelivery.objects.exists(), "no webhook event: the run did not exercise webhook delivery"
    return [r["body"].decode("utf-8", "replace") for r in receiver.received]


@pytest.fixture
def receiver(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "WEBHOOK_ALLOW_LOOPBACK": True}  # the receiver listens on loopback
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_it_leaks_no_patient_data_into_logs_error_bodies_or_subjects(
    captured,
    sentinel,
    centre_b,
    make_patient,
    coordinator_a,
    open_visit,
    smtp_settings,
    receiver,
):
    foreign_patient = make_patient(centre_b)
    token = APIClient(REMOTE_ADDR="10.7.7.7")
    token.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create('epic-a', [sentinel.centre])[1]}")
    staff_api = APIClient(REMOTE_ADDR="10.7.7.8")
    staff_api.force_login(coordinator_a)
    staff_admin = Client(REMOTE_ADDR="10.7.7.9")
    staff_admin.force_login(coordinator_a)
    calls = Responses()

    drive_api(calls, sentinel, foreign_patient, token, staff_api)
    drive_imports(calls, token)
    drive_admin(calls, sentinel, foreign_patient, staff_admin)
    webhook_bodies = drive_workers(sentinel, open_visit, smtp_settings, receiver, token)

    assert calls.errors, "the run produced no error response to search"
    webhooks_sent = [("webhook", body) for body in webhook_bodies]
    assert not leaks([*captured.found(), *calls.found(), *subjects(smtp_settings), *webhooks_sent])


def test_it_fails_a_reminder_to_an_unusable_address_without_quoting_it(
    captured,
    sentinel,
    open_visit,
    smtp_settings,
):
    Patient.objects.filter(pk=sentinel.pk).update(email=f"{EMAIL} {FAMILY}")  # as an older import could store it
    now = timezone.now()
    reminder = add_reminder(open_visit(sentinel, timezone.localdate(now, sentinel.centre.tz)), now)
    dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.FAILED and reminder.last_error == "invalid address: ValueError"
    assert not smtp_settings.messages
    assert not [line for _, line in captured.texts if FAMILY.lower() in line.lower() or EMAIL in line]
