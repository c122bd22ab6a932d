"""GET /health/: counts without patient data; 503 when the dispatcher stalls or a reminder is late."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models.reminders import DispatcherRun
from surveillance.reminders import dispatch
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


def test_it_is_unhealthy_when_the_dispatcher_has_not_run_for_five_minutes(client):
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
