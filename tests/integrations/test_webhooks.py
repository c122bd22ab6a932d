"""Outbound webhooks: signed events posted to a real HTTP server on loopback, retried with backoff, never twice."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from surveillance.care import ladder, lifecycle, reporting
from surveillance.integrations import webhooks
from surveillance.models import Patient, WebhookDelivery, WebhookEndpoint, WebhookStatus
from surveillance.models.patients import LadderStage
from surveillance.reminders import sweep


class Receiver:
    """A loopback HTTP server that records what it receives and answers the statuses it is told to."""

    def __init__(self):
        self.received: list[dict] = []
        self.statuses: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"headers": self.headers, "body": body})  # case-insensitive
                self.send_response(outer.statuses.pop(0) if outer.statuses else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


@pytest.fixture
def endpoint(api_a, receiver) -> WebhookEndpoint:
    response = api_a.post("/api/v1/webhooks", {"url": receiver.url}, format="json")
    assert response.status_code == 201, response.content
    return WebhookEndpoint.objects.get(pk=response.json()["id"])


def test_it_posts_a_signed_event_when_a_visit_is_missed(endpoint, receiver, planned_a):
    visit = planned_a[1].visits.filter(status="scheduled").first()
    lifecycle.visit_mark_missed(visit, reason="window closed")
    assert webhooks.webhooks_deliver_due(budget_seconds=5) == 1
    (request,) = receiver.received
    headers = request["headers"]
    assert headers["X-CartWatch-Event"] == "visit.missed"
    assert webhooks.webhook_signature_verify(endpoint.secret, headers["X-CartWatch-Signature"], request["body"])
    assert not webhooks.webhook_signature_verify("wrong", headers["X-CartWatch-Signature"], request["body"])
    payload = json.loads(request["body"])
    assert payload["data"]["visit"] == visit.pk and payload["type"] == "visit.missed"
    patient = planned_a[0]
    for text in (patient.mrn, patient.family_name, patient.email):
        assert text not in request["body"].decode()
    assert WebhookDelivery.objects.get().status == WebhookStatus.DELIVERED


def test_it_posts_malignancy_and_lost_to_follow_up_events(endpoint, receiver, planned_a):
    patient, infusion = planned_a
    reporting.malignancy_event_record(infusion, diagnosis_date=dt.date.today(), malignancy_type="t_cell_lymphoma")
    for visit in infusion.visits.filter(status="scheduled").order_by("due_date")[:5]:
        lifecycle.visit_mark_missed(visit, reason="window closed")
    ladder.patient_ladder_update(Patient.objects.get(pk=patient.pk))
    assert Patient.objects.get(pk=patient.pk).ladder_stage == LadderStage.LOST
    webhooks.webhooks_deliver_due(budget_seconds=5)
    events = [r["headers"]["X-CartWatch-Event"] for r in receiver.received]
    assert events.count("malignancy_event.recorded") == 1 and events.count("patient.lost_to_follow_up") == 1


def test_it_retries_with_backoff_then_delivers(endpoint, receiver, planned_a):
    receiver.statuses = [503]
    lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
    now = timezone.now()
    assert webhooks.webhooks_deliver_batch(now) == 1
    row = WebhookDelivery.objects.get()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 503)
    assert row.next_attempt_at >= now + dt.timedelta(seconds=59)
    assert webhooks.webhooks_deliver_batch(now) == 0  # not due yet
    assert webhooks.webhooks_deliver_batch(row.next_attempt_at) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("delivered", 2)
    assert len(receiver.received) == 2
    assert len({r["headers"]["X-CartWatch-Delivery"] for r in receiver.received}) == 1  # the receiver can dedupe


def test_it_gives_up_on_a_permanent_refusal(endpoint, receiver, planned_a):
    receiver.statuses = [410]
    lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
    webhooks.webhooks_deliver_batch()
    assert WebhookDelivery.objects.get().status == WebhookStatus.FAILED


def test_it_lets_only_one_worker_claim_a_delivery(endpoint, planned_a):
    lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
    now = timezone.now()
    first = webhooks.webhook_claim_due(now, limit=10, worker="w1")
    second = webhooks.webhook_claim_due(now, limit=10, worker="w2")
    assert len(first) == 1 and second == []


def test_it_reclaims_a_lease_left_by_a_dead_worker(endpoint, planned_a):
    lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
    now = timezone.now()
    webhooks.webhook_claim_due(now, limit=10, worker="dead")
    assert webhooks.webhook_leases_recover(now + dt.timedelta(minutes=10)) == 1
    assert WebhookDelivery.objects.get().status == WebhookStatus.PENDING


def test_it_plans_an_event_once_per_endpoint(endpoint, planned_a):
    visit = planned_a[1].visits.first()
    args = (planned_a[0].centre_id, "visit.missed", f"visit-missed-{visit.pk}", {"visit": visit.pk})
    assert webhooks.webhook_event_emit(*args) == 1
    assert webhooks.webhook_event_emit(*args) == 0


def test_it_refuses_plain_http_to_other_hosts(api_a, centre_a):
    response = api_a.post("/api/v1/webhooks", {"url": "http://ehr.example.org/hooks"}, format="json")
    assert response.status_code == 400 and "https" in response.json()["fields"]["url"][0]


def test_it_schedules_the_task_with_beat():
    from django.conf import settings

    from surveillance.integrations.tasks import deliver_webhooks

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert deliver_webhooks.name in tasks


def test_it_emits_one_event_per_visit_the_daily_sweep_marks_missed(endpoint, planned_a):
    infusion = planned_a[1]
    closed = list(infusion.visits.filter(status="scheduled").order_by("due_date")[:3])
    past = timezone.localdate() - dt.timedelta(days=60)
    for visit in closed:  # setup only: their windows closed long ago, nobody recorded them
        type(visit).objects.filter(pk=visit.pk).update(window_start=past, due_date=past, window_end=past)
    result = sweep.daily_sweep()
    assert result.missed == 3
    rows = WebhookDelivery.objects.filter(event="visit.missed")
    assert sorted(row.payload["data"]["visit"] for row in rows) == sorted(visit.pk for visit in closed)
    sweep.daily_sweep()  # a second run marks nothing and emits nothing more
    assert WebhookDelivery.objects.filter(event="visit.missed").count() == 3
