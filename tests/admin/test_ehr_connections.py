"""EHR connections in the admin: administrators only; each connection's current pull, its progress and the last
failure on the list; a connection that could never pull (or would send its token in clear) refused by the form."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import AuditEntry, EhrConnection, EhrPullRun, PullStatus

pytestmark = pytest.mark.django_db

LIST = "/admin/surveillance/ehrconnection/"


@pytest.fixture
def administrator(django_user_model):
    return django_user_model.objects.create_superuser("root", password="correct-horse-battery")


def test_it_shows_the_current_pull_its_progress_and_the_last_failure(login, administrator, ehr_connection):
    files = [
        {"type": "Patient", "url": "https://ehr.example.org/f/1", "lines_done": 11, "done": True},
        {"type": "Procedure", "url": "https://ehr.example.org/f/2", "lines_done": 500, "done": False},
    ]
    run = EhrPullRun.objects.create(
        connection=ehr_connection,
        status=PullStatus.FAILED,
        manifest={"output": []},
        files=files,
        report={"lines": 511},
        attempts=1,
        error="file 2 of 2 (Procedure): HTTP 503",
        failed_at=timezone.now() - dt.timedelta(minutes=5),
    )
    page = login(administrator).get(LIST).content.decode()
    assert "Epic production" in page
    assert "1 of 2 files imported (511 lines)" in page
    assert "Failed (resumes at the next pull)" in page
    assert "file 2 of 2 (Procedure): HTTP 503" in page

    detail = login(administrator).get(f"/admin/surveillance/ehrpullrun/{run.pk}/change/")
    assert detail.status_code == 200
    assert "<td>Procedure</td><td>500</td><td>to import</td>" in detail.content.decode()


def test_it_says_never_pulled_before_the_first_pull(login, administrator, ehr_connection):
    assert "never pulled" in login(administrator).get(LIST).content.decode()


@pytest.mark.parametrize("persona", ["coordinator_a", "physician_a", "auditor"])
def test_it_is_for_administrators_only(request, login, persona, ehr_connection):
    client = login(request.getfixturevalue(persona))
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{ehr_connection.pk}/change/").status_code == 403


def _form(centre, **fields) -> dict:
    data = {
        "centre": centre.pk,
        "name": "Cerner",
        "enabled": "on",
        "fhir_base_url": "https://fhir.example.org/r4",
        "group_id": "",
        "resource_types": ["Patient", "Procedure", "Observation"],
        "token_url": "https://fhir.example.org/token",
        "client_id": "cartwatch",
        "private_key_ref": "/run/secrets/ehr-key.pem",
        "key_id": "k2",
        "algorithm": "ES384",
        "scopes": "system/Patient.rs system/Procedure.rs system/Observation.rs",
        "since_0": "",
        "since_1": "",
    }
    data.update(fields)
    return data


def test_it_refuses_a_connection_that_could_not_pull_safely(login, administrator, centre_a):
    client = login(administrator)
    bad = _form(
        centre_a,
        fhir_base_url="http://fhir.example.org/r4",
        private_key_ref="-----BEGIN PRIVATE KEY-----",
        resource_types=["Procedure"],
    )
    response = client.post(f"{LIST}add/", bad)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"fhir_base_url", "private_key_ref", "resource_types"}
    assert "env:VARIABLE_NAME" in errors["private_key_ref"][0]
    assert not EhrConnection.objects.exists()

    response = client.post(f"{LIST}add/", _form(centre_a))
    assert response.status_code == 302
    saved = EhrConnection.objects.get()
    assert (saved.resource_types, saved.algorithm) == (["Patient", "Procedure", "Observation"], "ES384")
    assert AuditEntry.objects.filter(action="add", object_type="ehrconnection", object_id=str(saved.pk)).exists()
