"""GET /health/: bounded counts without patient data; 503 when the dispatcher stalls (not before its first run
after a fresh start), the mail relay cannot be reached or a reminder is late."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance import health
from surveillance.models.reminders import DispatcherRun
from surveillance.reminders import dispatch
from tests.ports import free_port
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db


def test_it_answers_counts_without_a_login(client, centre_a, make_patient, open_visit):
    now = timezone.now()
    add_reminder(open_visit(make_patient(centre_a), now.date()), now + dt.timedelta(days=1))
    dispatch.dispatcher_run_record("w", dispatch.DispatchResult(), now)
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert {"pending", "oldest_pending_age_s", "sent", "failed"} <= set(body)
    assert (body["pending"], body["oldest_pending_age_s"], body["status"]) == (1, 0, "ok")
    assert "patient" not in response.content.decode()


@pytest.fixture
def started_long_ago(monkeypatch):
    monkeypatch.setattr(health, "PROCESS_STARTED_AT", timezone.now() - dt.timedelta(hours=1))


def test_it_is_unhealthy_when_the_dispatcher_has_not_run_for_five_minutes(client, started_long_ago):
    assert client.get("/health/").status_code == 503  # never ran
    DispatcherRun.objects.create(worker="w", finished_at=timezone.now() - dt.timedelta(minutes=4))
    assert client.get("/health/").status_code == 200
    DispatcherRun.objects.update(finished_at=timezone.now() - dt.timedelta(minutes=6))
    response = client.get("/health/")
    assert response.status_code == 503 and response.json()["status"] == "dispatcher stalled"


def test_it_is_unhealthy_when_a_reminder_is_fifteen_minutes_late(client, centre_a, make_patient, open_visit):
    now = timezone.now()
    DispatcherRun.objects.create(worker="w", finished_at=now)
    reminder = add_reminder(open_visit(make_patient(centre_a), now.date()), now - dt.timedelta(minutes=14))
    assert client.get("/health/").status_code == 200
    type(reminder).objects.filter(pk=reminder.pk).update(
        send_after=now - dt.timedelta(minutes=16), next_attempt_at=now - dt.timedelta(minutes=16)
    )
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["late"] == 1 and response.json()["oldest_pending_age_s"] >= 16 * 60


def test_it_does_not_call_a_fresh_start_stalled_before_the_first_dispatcher_run(client, monkeypatch):
    monkeypatch.setattr(health, "PROCESS_STARTED_AT", timezone.now() - dt.timedelta(minutes=4))
    response = client.get("/health/")
    assert response.status_code == 200 and response.json()["last_dispatch_at"] is None
    monkeypatch.setattr(health, "PROCESS_STARTED_AT", timezone.now() - dt.timedelta(minutes=6))
    assert client.get("/health/").json()["status"] == "dispatcher stalled"


def test_it_reports_an_unreachable_mail_relay_within_minutes(client, centre_a, make_patient, open_visit, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "HEALTH_MAIL_UNREACHABLE_SECONDS": 120}
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2  # nobody listens
    now = timezone.now()
    reminder = add_reminder(open_visit(make_patient(centre_a), now.date()), now - dt.timedelta(minutes=1))
    dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert reminder.last_error.startswith("mail server unreachable")
    assert client.get("/health/").status_code == 200  # a minute: the relay may be restarting
    type(reminder).objects.filter(pk=reminder.pk).update(send_after=now - dt.timedelta(minutes=3))
    response = client.get("/health/")
    assert response.status_code == 503 and response.json()["status"] == "mail relay unreachable"


def test_it_stops_counting_at_the_configured_bound(client, centre_a, make_patient, open_visit, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "HEALTH_COUNT_LIMIT": 2}
    now = timezone.now()
    DispatcherRun.objects.create(worker="w", finished_at=now)
    for _ in range(3):
        add_reminder(open_visit(make_patient(centre_a), now.date()), now + dt.timedelta(days=1))
    body = client.get("/health/").json()
    assert (body["pending"], body["counted_up_to"]) == (2, 2)
