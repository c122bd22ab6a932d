"""Signed links in patient emails land as tasks for the coordinator; unsubscribe stops routine reminders only."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core import signing
from django.urls import reverse

from surveillance.models import AuditEntry, PatientRequest, ReminderStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.models.visits import RequestKind
from surveillance.reminders import dispatch, messages
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC)


def _path(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_it_turns_a_confirmation_into_a_task_for_the_coordinator(client, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    url = _path(messages.visit_link_url(visit, RequestKind.CONFIRM))
    page = client.get(url)
    assert page.status_code == 200 and centre_a.name in page.content.decode()
    assert not PatientRequest.objects.exists()  # a GET (a mail scanner) changes nothing
    assert client.post(url).status_code == 200
    assert client.post(url).status_code == 200  # a second click adds no second task
    [request] = PatientRequest.objects.all()
    assert (request.visit, request.kind, request.handled_at) == (visit, RequestKind.CONFIRM, None)
    assert AuditEntry.objects.filter(action="patient_request", patient_id=visit.infusion.patient_id).exists()


def test_it_keeps_the_patients_message_with_a_reschedule_request(client, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a, preferred_language="es"), NOW.date())
    url = _path(messages.visit_link_url(visit, RequestKind.RESCHEDULE))
    assert "otra fecha" in client.get(url).content.decode()
    too_long = client.post(url, {"message": "x" * 501})
    assert too_long.status_code == 400 and "500" in too_long.content.decode()
    assert not PatientRequest.objects.exists()
    client.post(url, {"message": "Estoy de viaje, ¿la semana siguiente?"})
    assert PatientRequest.objects.get().message == "Estoy de viaje, ¿la semana siguiente?"


def test_it_refuses_a_forged_or_tampered_link(client, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    token = messages.visit_link_token(visit, RequestKind.DONE_ELSEWHERE)
    assert client.get(reverse("surveillance:visit-link", args=[token[:-2] + "xx"])).status_code == 400
    assert client.post(reverse("surveillance:unsubscribe", args=["not-a-token"])).status_code == 400
    assert not PatientRequest.objects.exists()


def test_it_says_the_visit_changed_when_it_is_no_longer_open(client, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    url = _path(messages.visit_link_url(visit, RequestKind.CONFIRM))
    type(visit).objects.filter(pk=visit.pk).update(status="cancelled", status_reason="x")
    assert client.post(url).status_code == 409
    assert not PatientRequest.objects.exists()


def test_it_unsubscribes_in_one_click_but_keeps_the_care_teams_escalations(
    client, smtp_settings, centre_a, make_patient, open_visit
):
    patient = make_patient(centre_a)
    visit = open_visit(patient, NOW.date())
    routine = add_reminder(visit, NOW)
    escalation = add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE)
    url = _path(messages.unsubscribe_url(patient))
    assert client.get(url).status_code == 200
    patient.refresh_from_db()
    assert patient.reminders_opted_out_at is None  # a GET never unsubscribes
    # RFC 8058: the mail client POSTs "List-Unsubscribe=One-Click", with no cookie and no CSRF token
    client.handler.enforce_csrf_checks = True
    response = client.post(url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    patient.refresh_from_db()
    assert patient.reminders_opted_out_at is not None

    dispatch.dispatch_run(NOW)
    routine.refresh_from_db()
    escalation.refresh_from_db()
    assert routine.status == ReminderStatus.SKIPPED
    assert escalation.status == ReminderStatus.SENT
    assert [m["To"] for m in smtp_settings.messages] == [centre_a.care_team_email]


def test_it_signs_links_as_django_signing_does(settings, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    for secret in ("first-secret-key-" * 4, "second-secret-key-" * 4):  # a new key signs anew at once
        settings.SECRET_KEY = secret
        with mock.patch("django.core.signing.time.time", return_value=NOW.timestamp()):
            token = messages.visit_link_token(visit, RequestKind.RESCHEDULE)
            unsubscribe = messages.unsubscribe_token(visit.infusion.patient)
            assert token == signing.dumps(
                {"v": visit.pk, "k": RequestKind.RESCHEDULE}, salt=messages.LINK_SALT, compress=True
            )
            assert unsubscribe == signing.dumps(
                {"p": visit.infusion.patient_id}, salt=messages.UNSUBSCRIBE_SALT, compress=True
            )
        assert messages.visit_link_read(token) == (visit.pk, RequestKind.RESCHEDULE)
        assert messages.unsubscribe_read(unsubscribe) == visit.infusion.patient_id
