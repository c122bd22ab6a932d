"""No patient data in any log line, error body or email subject, over a full run of the service.

A sentinel patient with distinctive identifiers is planted at centre A; then the API (as an integration token and as
a staff session), the admin, EHR imports with bad input that quotes the sentinel, the reminder dispatcher sending to
a real SMTP server on loopback, the daily sweep, the weekly digest and webhook delivery all run with every logger
at DEBUG. None of the sentinel's strings may appear in a captured log record, in a 4xx/5xx body (or the error list
of an import report), or in a Subject header; nor in the web server's access log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import traceback
import urllib.error
import urllib.request

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from surveillance.api.auth import api_token_create
from surveillance.care import planning
from surveillance.integrations import webhooks
from surveillance.models import Patient, ReminderStatus, WebhookDelivery
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import dispatch, sweep
from tests.imports.conftest import HCPCS, collection, concept
from tests.integrations.test_webhooks import Receiver
from tests.reminders.conftest import add_reminder, open_visit, smtp_server, smtp_settings  # noqa: F401
from tests.test_deployment import _free_port, compose_config, compose_secret, compose_web, production_web  # noqa: F401

GIVEN, FAMILY = "Quillonia", "Vexborough"
MRN = "MRN-ZQ-774411"
EMAIL = "quillonia.vexborough@sentinel.example"
PHONE = "+1-555-013-7788"
BIRTH = "1953-11-29"
SENTINELS = (GIVEN, FAMILY, MRN, EMAIL, PHONE, BIRTH, "quillonia", "vexborough")

# The root and the project's families, and the two that settings.LOGGING quiets to ERROR (turned up here: an
# operator may lower them, and a 404's warning names the path).
LOGGERS = ("", "django", "celery", "surveillance", "django.request", "django.security")
FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"


class Capture(logging.Handler):
    """Keeps every record: its formatted message, its arguments and any exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.texts.append((record.name, "\n".join(parts)))


@pytest.fixture
def captured():
    handler = Capture()
    previous = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(previous[name])


@pytest.fixture
def sentinel(centre_a, make_patient, make_infusion):
    patient = make_patient(
        centre_a,
        given_name=GIVEN,
        family_name=FAMILY,
        mrn=MRN,
        email=EMAIL,
        phone=PHONE,
        birth_date=dt.date.fromisoformat(BIRTH),
    )
    infusion = make_infusion(patient, infusion_date=timezone.localdate() - dt.timedelta(days=60))
    planning.infusion_plan(infusion)
    return patient


class Responses:
    """Every response of the run, so that the error bodies can be searched at the end."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, int, str]] = []

    def keep(self, label: str, response, *, expect: int | None = None):
        if expect is not None:
            assert response.status_code == expect, (label, response.status_code, response.content[:500])
        body = response.content.decode("utf-8", "replace")
        if response.status_code >= 400:
            self.errors.append((label, response.status_code, body))
        elif body.startswith("{") and "errors" in body:
            report = json.loads(body)
            if report.get("errors"):
                self.errors.append((label, response.status_code, json.dumps(report["errors"])))
        return response


def fhir_patient(**overrides) -> dict:
    resource = {
        "resourceType": "Patient",
        "id": "sentinel",
        "identifier": [{"system": "urn:example:mrn", "value": MRN}],
        "name": [{"given": [GIVEN], "family": FAMILY}],
        "telecom": [{"system": "email", "value": EMAIL}, {"system": "phone", "value": PHONE}],
        "birthDate": BIRTH,
        "gender": "female",
    }
    resource.update(overrides)
    return resource


def car_t_procedure(performed: str) -> dict:
    return {
        "resourceType": "Procedure",
        "id": "car-t",
        "status": "completed",
        "subject": {"reference": "Patient/sentinel", "display": f"{GIVEN} {FAMILY}"},
        "code": concept(HCPCS, "Q2041"),
        "performedDateTime": performed,
    }


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


def drive_workers(sentinel, open_visit, smtp_settings, receiver, token: APIClient) -> list[str]:  # noqa: F811
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
    open_visit,  # noqa: F811
    smtp_settings,  # noqa: F811
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
    assert captured.texts, "nothing was logged: the capture is not attached"
    leaks = []
    for text in SENTINELS:
        needle = text.lower()
        leaks += [f"log {name}: {around(line, needle)}" for name, line in captured.texts if needle in line.lower()]
        leaks += [
            f"{label} ({code}): {around(body, needle)}" for label, code, body in calls.errors if needle in body.lower()
        ]
        leaks += [f"subject: {m['Subject']}" for m in smtp_settings.messages if needle in str(m["Subject"]).lower()]
        leaks += [f"webhook: {around(body, needle)}" for body in webhook_bodies if needle in body.lower()]
    assert not leaks, "\n".join(dict.fromkeys(leaks))


def around(text: str, needle: str, width: int = 120) -> str:
    """The leak in its context, for the failure message."""
    at = text.lower().index(needle)
    return text[max(at - width, 0) : at + len(needle) + width].replace("\n", " ")


def test_it_fails_a_reminder_to_an_unusable_address_without_quoting_it(
    captured,
    sentinel,
    open_visit,  # noqa: F811
    smtp_settings,  # noqa: F811
):
    Patient.objects.filter(pk=sentinel.pk).update(email=f"{EMAIL} {FAMILY}")  # as an older import could store it
    now = timezone.now()
    reminder = add_reminder(open_visit(sentinel, timezone.localdate(now, sentinel.centre.tz)), now)
    dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.FAILED and reminder.last_error == "invalid address: ValueError"
    assert not smtp_settings.messages
    assert not [line for _, line in captured.texts if FAMILY.lower() in line.lower() or EMAIL in line]


@pytest.mark.django_db
def test_it_never_logs_sql_and_its_parameters_even_at_debug_level(caplog):
    from django.db import connection

    caplog.set_level(logging.DEBUG)  # as DJANGO_LOG_LEVEL=DEBUG would
    caplog.set_level(logging.DEBUG, logger="django")  # and someone debugging Django itself
    connection.force_debug_cursor = True  # as DJANGO_DEBUG would
    try:
        Patient.objects.filter(family_name=FAMILY).exists()
    finally:
        connection.force_debug_cursor = False
    assert not [record for record in caplog.records if FAMILY in record.getMessage()]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL")
def test_it_keeps_query_strings_and_referers_out_of_the_web_servers_access_log(compose_web, tmp_path):  # noqa: F811
    """The real gunicorn command of the compose file, on loopback: searches by name and MRN leave no trace."""
    port = _free_port()
    log = tmp_path / "web.log"
    opener = urllib.request.build_opener(NoRedirect)  # production redirects to HTTPS: the 301 is logged all the same
    with production_web(compose_web, port, log):
        base = f"http://127.0.0.1:{port}"
        referer = {"Referer": f"{base}/admin/surveillance/patient/?q={FAMILY}"}
        for path in (
            f"/health/live?mrn={MRN}",
            f"/api/v1/patients?mrn={MRN}&email={EMAIL}",
            f"/admin/surveillance/patient/?q={GIVEN}+{FAMILY}&birth_date={BIRTH}",
        ):
            request = urllib.request.Request(base + path, headers={**referer, "Host": "127.0.0.1"})
            with contextlib.suppress(urllib.error.HTTPError):
                opener.open(request, timeout=10)
    text = log.read_text()
    assert '"GET /health/live HTTP/1.1" 200' in text, text[-2000:]  # the access log was written
    assert '"GET /api/v1/patients HTTP/1.1"' in text
    assert not [s for s in SENTINELS if s.lower() in text.lower()], text[-2000:]
