"""/health/ names the EHR connections that are behind: a failing pull, or none finished for EHR_PULL_STALE_HOURS.
That check is degraded, not down: the answer's code stays the reminder alarm's."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance import health
from surveillance.models import EhrConnection, EhrPullRun, PullStatus
from surveillance.models.reminders import DispatcherRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def dispatcher_ok():
    DispatcherRun.objects.create(worker="w", finished_at=timezone.now())


def test_it_calls_a_connection_not_pulled_for_six_hours_degraded(client, dispatcher_ok, bulk_server, make_connection):
    connection = make_connection(bulk_server)
    body = client.get("/health/").json()
    assert (body["status"], body["ehr_pull"]["status"], body["ehr_pull"]["connections"]) == ("ok", "ok", 1)

    EhrConnection.objects.update(created_at=timezone.now() - dt.timedelta(hours=7))  # never pulled since
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ehr pull degraded"
    assert body["ehr_pull"] == {
        "status": "degraded",
        "connections": 1,
        "failing": [],
        "stale": [connection.pk],
        "oldest_pull_age_s": None,
    }

    EhrConnection.objects.update(last_pulled_at=timezone.now() - dt.timedelta(hours=5))
    body = client.get("/health/").json()
    assert body["status"] == "ok" and 5 * 3600 <= body["ehr_pull"]["oldest_pull_age_s"] < 5 * 3600 + 60


def test_it_names_a_failing_connection_beside_the_reminder_alarm(client, bulk_server, make_connection, monkeypatch):
    monkeypatch.setattr(health, "PROCESS_STARTED_AT", timezone.now() - dt.timedelta(hours=1))  # dispatcher stalled
    connection = make_connection(bulk_server)
    EhrPullRun.objects.create(connection=connection, status=PullStatus.FAILED, error="file 1 of 1 (Patient): HTTP 500")
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "dispatcher stalled, ehr pull degraded"
    assert body["ehr_pull"]["failing"] == [connection.pk]
    assert "HTTP 500" not in response.content.decode()  # the reason is the admin's to show


def test_it_leaves_disabled_connections_out(client, dispatcher_ok, bulk_server, make_connection):
    connection = make_connection(bulk_server, enabled=False)
    EhrConnection.objects.update(created_at=timezone.now() - dt.timedelta(days=3))
    EhrPullRun.objects.create(connection=connection, status=PullStatus.FAILED)
    body = client.get("/health/").json()
    assert body["ehr_pull"]["connections"] == 0 and body["status"] == "ok"
