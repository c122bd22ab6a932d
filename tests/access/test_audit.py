"""Audit: every view and change of a patient's data is recorded (who, what, when, from where), readable by
auditors and editable by no one; failed logins are throttled; idle staff sessions end."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from surveillance.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_it_records_who_viewed_a_patient_page_and_from_where(login, coordinator_a, planned, centre_a):
    infusion = planned(centre_a)
    login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    entry = AuditEntry.objects.get(action="view", object_type="patient")
    assert (entry.actor, entry.patient_id, entry.remote_addr) == (coordinator_a, infusion.patient_id, "10.1.2.3")
    assert entry.at is not None


def test_it_records_the_patients_a_list_page_showed(login, coordinator_a, planned, centre_a):
    first, second = planned(centre_a), planned(centre_a)
    login(coordinator_a).get(reverse("admin:surveillance_patient_changelist"))
    entry = AuditEntry.objects.get(action="list", object_type="patient")
    assert entry.changes["patient_ids"] == sorted([first.patient_id, second.patient_id])


def test_it_records_a_change_made_through_the_admin_form(login, coordinator_a, planned, centre_a):
    patient = planned(centre_a).patient
    client = login(coordinator_a)
    url = reverse("admin:surveillance_patient_change", args=[patient.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(centre=patient.centre_id, phone="+1 202-555-0199", birth_date=patient.birth_date.isoformat())
    data["reminders_opted_out_at_0"] = data["reminders_opted_out_at_1"] = ""
    data.pop("reminders_opted_out_at", None)
    data["contact_consent"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    entry = AuditEntry.objects.get(action="change", object_type="patient")
    assert entry.actor == coordinator_a and entry.patient_id == patient.pk and "phone" in entry.changes["fields"]


def test_it_lets_auditors_read_the_trail_and_nobody_edit_it(
    login, auditor, coordinator_a, physician_a, planned, centre_a
):
    infusion = planned(centre_a)
    login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    entry = AuditEntry.objects.filter(action="view").first()
    trail = login(auditor).get(reverse("admin:surveillance_auditentry_changelist"))
    assert trail.status_code == 200 and entry in trail.context["cl"].result_list
    for user in (auditor, coordinator_a, physician_a):
        client = login(user)
        change = reverse("admin:surveillance_auditentry_change", args=[entry.pk])
        assert client.post(change, {"action": "tampered"}).status_code == 403
        assert (
            client.post(reverse("admin:surveillance_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code
            == 403
        )
    assert login(coordinator_a).get(reverse("admin:surveillance_auditentry_changelist")).status_code == 403
    entry.action = "tampered"
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()
    assert AuditEntry.objects.filter(pk=entry.pk, action="view").exists()


def test_it_records_authenticated_api_requests(login, coordinator_a):
    login(coordinator_a).get("/api/v1/patients/")
    entry = AuditEntry.objects.get(action="api_get")
    assert (entry.actor, entry.object_id, entry.remote_addr) == (coordinator_a, "/api/v1/patients/", "10.1.2.3")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements")
def test_it_writes_every_api_requests_row_with_one_prepared_insert(login, coordinator_a):
    client = login(coordinator_a)
    for path in ("/api/v1/patients", "/api/v1/visits", "/api/v1/patients"):
        assert client.get(path).status_code == 200
    assert AuditEntry.objects.filter(action="api_get").count() == 3
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"INSERT INTO {connection.ops.quote_name(AuditEntry._meta.db_table)}%"],
        )
        assert len(cursor.fetchall()) == 1


def _sign_in(client: Client, username: str, password: str):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


def test_it_throttles_failed_logins_per_username(coordinator_a, physician_a):
    client = Client(REMOTE_ADDR="10.9.9.9")
    limit = settings.CARTWATCH["LOGIN_FAILURES_PER_USER"]
    for _ in range(limit):
        assert _sign_in(client, "coordinator-a", "wrong-password").status_code == 200
    assert AuditEntry.objects.filter(action="login_failed", object_id="coordinator-a").count() == limit
    refused = _sign_in(client, "coordinator-a", "correct-horse-battery")
    assert refused.status_code == 200 and b"Too many failed sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session
    other = _sign_in(Client(REMOTE_ADDR="10.9.9.8"), "physician-a", "correct-horse-battery")
    assert other.status_code == 302


def test_it_ends_an_idle_staff_session(login, coordinator_a):
    assert settings.SESSION_SAVE_EVERY_REQUEST and settings.SESSION_COOKIE_AGE <= 3600
    client = login(coordinator_a)
    assert client.get(reverse("admin:index")).status_code == 200
    key = client.session.session_key
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
