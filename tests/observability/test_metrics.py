"""``/metrics`` for Prometheus: request latency by route pattern and the health figures, for a scraper beside the
process or one holding the token; never a path, a query string or a patient's data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_it_serves_the_outbox_figures_and_request_latency_by_route(client, planned_a):
    client.get("/api/v1/")
    text = client.get("/metrics").content.decode()
    assert 'cartwatch_reminders{state="pending"}' in text
    assert "cartwatch_database_up 1.0" in text
    assert 'cartwatch_http_request_duration_seconds_bucket{le="0.1",method="GET",route="api/v1/",status="2xx"}' in text


def test_it_labels_a_request_by_its_pattern_not_its_path_or_query(client, coordinator_a, login, planned_a):
    patient, _ = planned_a
    staff = login(coordinator_a)
    staff.get(f"/admin/surveillance/patient/?q={patient.family_name}")
    staff.get(f"/admin/surveillance/patient/{patient.pk}/change/")
    text = client.get("/metrics").content.decode()
    assert patient.family_name not in text
    assert f"/{patient.pk}/" not in text
    assert 'route="admin/surveillance/patient/"' in text


def test_it_refuses_a_scraper_that_is_not_on_loopback(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_it_asks_for_the_token_when_one_is_set(client, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "METRICS_TOKEN": "s3cret-scrape"}
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape", REMOTE_ADDR="203.0.113.9")
    assert answer.status_code == 200 and b"cartwatch_reminders" in answer.content


def test_it_counts_the_ehr_connections_whose_pull_is_failing(client, ehr_connection):
    from surveillance.models import EhrPullRun, PullStatus

    EhrPullRun.objects.create(connection=ehr_connection, status=PullStatus.FAILED, error="the status: HTTP 503")
    text = client.get("/metrics").content.decode()
    assert 'cartwatch_ehr_pull_connections{state="enabled"} 1.0' in text
    assert 'cartwatch_ehr_pull_connections{state="failing"} 1.0' in text
    assert 'cartwatch_ehr_pull_connections{state="stale"} 0.0' in text
