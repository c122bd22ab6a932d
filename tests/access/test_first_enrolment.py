"""A new staff member's first device without a shell: where the factor is required, a right password from a young
account with no device signs in to an enrolment-only session, which reaches the enrolment page (and the language
preference, and sign-out) but no worklist and no API, until a code from the new device verifies it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from surveillance.access.second_factor import totp_enroll
from surveillance.models import AuditEntry
from tests.access.test_second_factor import code_now, sign_in

pytestmark = pytest.mark.django_db
ENROLMENT = reverse("admin:second_factor")
OVERDUE = reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue"


@pytest.fixture(autouse=True)
def _required(settings):
    settings.CARTWATCH_REQUIRE_2FA = True
    settings.CARTWATCH_FIRST_ENROLMENT_DAYS = 7


def _enrolment_session(address: str) -> Client:
    client = Client(REMOTE_ADDR=address)
    response = sign_in(client, "coordinator-a")
    assert response.status_code == 302 and "_auth_user_id" in client.session
    return client


def test_it_opens_the_workspace_once_a_new_user_proves_a_first_device(coordinator_a):
    client = _enrolment_session("10.6.6.1")
    home = client.get(reverse("admin:index"))
    assert home.status_code == 302 and home["Location"] == ENROLMENT
    started = AuditEntry.objects.get(action="first_enrolment_started", actor=coordinator_a)
    assert started.object_id == "coordinator-a"

    page = client.get(ENROLMENT)
    assert page.status_code == 200 and "<svg" in page.content.decode()
    assert page.context["available_apps"] == []  # no links to pages the session cannot open
    confirmed = client.post(ENROLMENT, {"otp_token": code_now(page.context["pending"])})
    assert confirmed.status_code == 200 and len(confirmed.context["codes"]) == 10

    completed = AuditEntry.objects.get(action="second_factor_enrolled", actor=coordinator_a)
    assert completed.changes["first_enrolment"] is True
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(OVERDUE).status_code == 200
    assert client.get("/api/v1/patients").status_code == 200


def test_it_keeps_an_enrolment_only_session_out_of_worklists_writes_and_the_api(coordinator_a, planned, centre_a):
    patient = planned(centre_a).patient
    client = _enrolment_session("10.6.6.2")
    worklist = client.get(OVERDUE)
    assert worklist.status_code == 302 and worklist["Location"] == ENROLMENT
    patient_page = client.get(reverse("admin:surveillance_patient_change", args=[patient.pk]))
    assert patient_page.status_code == 302 and patient_page["Location"] == ENROLMENT
    write = client.post(reverse("admin:surveillance_patient_change", args=[patient.pk]), {"status": "withdrawn"})
    assert write.status_code == 403
    patient.refresh_from_db()
    assert patient.status != "withdrawn"
    assert client.get("/api/v1/patients").status_code == 401
    assert client.get(reverse("admin:preferences")).status_code == 200
    assert client.post(reverse("admin:logout")).status_code == 200
    assert "_auth_user_id" not in client.session


def test_it_never_offers_the_path_to_a_user_with_a_device(coordinator_a):
    totp_enroll(coordinator_a)
    client = Client(REMOTE_ADDR="10.6.6.3")
    refused = sign_in(client, "coordinator-a")
    assert refused.status_code == 200 and b"Enter the authentication code" in refused.content
    assert "_auth_user_id" not in client.session
    assert not AuditEntry.objects.filter(action="first_enrolment_started").exists()


def test_it_closes_a_session_whose_user_was_enrolled_meanwhile(coordinator_a):
    client = _enrolment_session("10.6.6.4")
    totp_enroll(coordinator_a)  # an administrator at a shell, say: now the code is what signs in
    response = client.get(ENROLMENT)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_it_refuses_an_account_older_than_the_limit(coordinator_a):
    coordinator_a.date_joined = timezone.now() - dt.timedelta(days=7, minutes=1)
    coordinator_a.save(update_fields=["date_joined"])
    client = Client(REMOTE_ADDR="10.6.6.5")
    refused = sign_in(client, "coordinator-a")
    assert refused.status_code == 200 and b"Ask an administrator to enrol you" in refused.content
    assert "_auth_user_id" not in client.session
    assert not AuditEntry.objects.filter(action="first_enrolment_started").exists()
