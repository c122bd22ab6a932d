"""Every API route x every kind of caller of centre B, against centre A's data: nothing comes back, nothing changes.

The routes are enumerated from the URL configuration, so a new endpoint is covered (or fails here until it is).
A foreign object is a 404 (never a 403 that would confirm it exists); a caller that may not write at all gets a
403 whatever the object; lists and exports simply do not contain it; a write cannot place an object in centre A.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import URLResolver, get_resolver

from surveillance.api.auth import api_token_create
from surveillance.care import reporting
from surveillance.imports import jobs
from surveillance.models import (
    FollowUpVisit,
    ImportJob,
    Infusion,
    MalignancyEvent,
    Patient,
    Protocol,
    Reminder,
    TreatmentCentre,
    WebhookEndpoint,
)
from tests.api.conftest import token_client

PK = re.compile(r"\(\?P<pk>[^)]*\)")

#: Bodies that try to put something into centre A, for the routes that create without a path id.
CREATE_BODIES = {
    "api:patient-list": lambda a: {"centre": "a", "mrn": "B-0001"},
    "api:infusion-list": lambda a: {"patient": a["patient"].pk, "product": "yescarta", "infusion_date": "2025-01-10"},
    "api:malignancy-event-list": lambda a: {
        "infusion": a["infusion"].pk,
        "diagnosis_date": dt.date.today().isoformat(),
        "malignancy_type": "solid",
    },
    "api:webhook-list": lambda a: {"centre": "a", "url": "https://ehr.example.org/hooks"},
}
#: Routes without a path id whose query names centre A.
QUERIES = {
    "api:import-fhir": "?centre=a",
    "api:import-csv": "?centre=a",
    "api:export-visits": "?centre=a&due_after=2000-01-01&due_before=2045-01-01",
}
BODIES = {
    "api:import-fhir": ('{"resourceType": "Bundle", "type": "collection", "entry": []}', "application/fhir+json"),
    "api:import-csv": ("mrn,product,infusion_date\n", "text/csv"),
}


def api_routes():
    """(route template with {pk}, url name, view callback) for every route under api/v1/."""

    def walk(patterns, prefix, namespace):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                ns = f"{namespace}:{pattern.namespace}" if namespace and pattern.namespace else pattern.namespace
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), ns or namespace)
            else:
                yield prefix + str(pattern.pattern), f"{namespace}:{pattern.name}", pattern.callback

    for route, name, callback in walk(get_resolver().url_patterns, "", ""):
        if route.startswith("api/v1/"):
            template = PK.sub("{pk}", route).replace("^", "").replace("$", "").replace("\\.", ".")
            yield "/" + template, name, callback


def methods_of(callback) -> list[str]:
    actions = getattr(callback, "actions", None)
    if actions:
        return sorted(m for m in actions if m in ("get", "post", "put", "patch", "delete"))  # DRF adds "head"
    view = getattr(callback, "view_class", None) or callback.cls
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]


def content_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def model_of(callback):
    view = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    queryset = getattr(view, "queryset", None)
    return queryset.model if queryset is not None else None


@pytest.fixture
def world_a(planned_a, centre_a):
    patient, infusion = planned_a
    event = reporting.malignancy_event_record(
        infusion, diagnosis_date=dt.date.today() - dt.timedelta(days=3), malignancy_type="t_cell_lymphoma"
    )
    webhook = WebhookEndpoint.objects.create(centre=centre_a, url="https://a.example.org/hooks", secret="s" * 64)
    visit = FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").first()
    reminder = Reminder.objects.filter(visit__infusion=infusion).first()
    assert visit is not None and reminder is not None
    job = jobs.import_job_create(
        centre_a, format="csv", payload=b"mrn\n", source_system="ehr", dry_run=False, requested_by="token:epic-a"
    )
    return {
        ImportJob: job,
        TreatmentCentre: centre_a,
        Patient: patient,
        Infusion: infusion,
        FollowUpVisit: visit,
        Reminder: reminder,
        MalignancyEvent: event,
        WebhookEndpoint: webhook,
        "patient": patient,
        "infusion": infusion,
    }


@pytest.fixture(params=["token_b", "readonly_token_b", "physician_b"])
def caller_b(request, centre_b, staff_client):
    if request.param == "physician_b":
        return staff_client(request.getfixturevalue("physician_b"))
    raw = api_token_create(request.param, [centre_b], read_only=request.param.startswith("readonly"))[1]
    return token_client(raw)


def snapshot(world) -> dict:
    patient, infusion = world[Patient], world[Infusion]
    return {
        "patients": list(Patient.objects.filter(centre=world[TreatmentCentre]).values()),
        "infusions": list(Infusion.objects.filter(patient=patient).values()),
        "visits": list(FollowUpVisit.objects.filter(infusion=infusion).values()),
        "events": list(MalignancyEvent.objects.filter(infusion=infusion).values()),
        "webhooks": list(WebhookEndpoint.objects.filter(centre=world[TreatmentCentre]).values()),
    }


def test_it_enumerates_every_api_route():
    names = {name for _, name, _ in api_routes()}
    assert {"api:patient-detail", "api:visit-complete", "api:import-fhir", "api:export-visits"} <= names
    assert len(names) >= 20


def test_it_gives_centre_b_nothing_of_centre_a(caller_b, world_a):
    before = snapshot(world_a)
    secret_texts = [world_a[Patient].mrn, world_a[Patient].family_name, world_a[Patient].email]
    checked = []
    for template, name, callback in api_routes():
        model = model_of(callback)
        for method in methods_of(callback):
            send = getattr(caller_b, method)
            if "{pk}" in template:
                if model is Protocol:
                    continue  # protocols are shared reference data, not a centre's
                url = template.format(pk=world_a[model].pk)
                response = send(url, {}, format="json") if method != "get" else send(url)
                allowed = {404} if method == "get" else {404, 403}
                assert response.status_code in allowed, (method, url, response.status_code)
            elif method == "get":
                url = template + QUERIES.get(name, "")
                response = send(url)
                assert response.status_code == 200, (url, response.status_code)
                if model is not None and model is not Protocol:
                    ids = {row["id"] for row in response.json()["results"]}
                    assert world_a[model].pk not in ids, url
            else:
                if name in BODIES:
                    body, content_type = BODIES[name]
                    response = caller_b.generic("POST", template + QUERIES[name], body, content_type=content_type)
                else:
                    assert name in CREATE_BODIES, f"add an ownership case for the new route {name}"
                    response = send(template, CREATE_BODIES[name](world_a), format="json")
                assert response.status_code in (400, 403), (name, response.status_code)
            body = content_of(response).decode("utf-8", "replace")
            for text in secret_texts:
                assert text not in body, (method, template)
            checked.append((method, name))
    assert snapshot(world_a) == before
    assert len(checked) >= 25


def test_it_shows_centre_a_its_own_objects(api_a, world_a):
    for template, name, callback in api_routes():
        model = model_of(callback)
        if "{pk}" in template and "get" in methods_of(callback) and model is not None and name.endswith("-detail"):
            pk = Protocol.objects.first().pk if model is Protocol else world_a[model].pk
            assert api_a.get(template.format(pk=pk)).status_code == 200, name


@pytest.mark.parametrize(
    ("path", "key", "model"),
    [
        ("/api/v1/visits", "infusion", Infusion),
        ("/api/v1/infusions", "patient", Patient),
        ("/api/v1/reminders", "visit", FollowUpVisit),
        ("/api/v1/malignancy-events", "infusion", Infusion),
    ],
)
def test_it_answers_a_filter_on_a_foreign_id_as_on_one_that_does_not_exist(caller_b, world_a, path, key, model):
    foreign = world_a[model].pk
    missing = model.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
    on_foreign, on_missing = caller_b.get(path, {key: foreign}), caller_b.get(path, {key: missing})
    assert on_foreign.status_code == on_missing.status_code == 200
    assert on_foreign.json()["results"] == on_missing.json()["results"] == []
