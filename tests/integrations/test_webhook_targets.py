"""Webhook targets: a URL whose host is (or resolves to) a private, loopback or link-local address is refused at
registration with a field message, and a target re-pointed there later fails at delivery without being posted."""

from __future__ import annotations

import pytest

from surveillance.care import lifecycle
from surveillance.integrations import webhooks
from surveillance.models import WebhookDelivery, WebhookEndpoint, WebhookStatus
from tests.integrations.test_webhooks import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_loopback(settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "WEBHOOK_ALLOW_LOOPBACK": False}


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/hooks",  # the hospital network
        "https://192.168.1.20/hooks",
        "https://169.254.169.254/latest/meta-data/",  # a cloud's metadata endpoint
        "https://[fe80::1]/hooks",
        "https://[::ffff:10.0.0.5]/hooks",
        "https://0.0.0.0/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",  # a name that resolves to loopback
        "http://127.0.0.1:8000/hooks",
    ],
)
def test_it_refuses_a_target_that_is_not_public(api_a, no_loopback, url):
    response = api_a.post("/api/v1/webhooks", {"url": url}, format="json")
    assert response.status_code == 400
    (message,) = response.json()["fields"]["url"]
    assert "address" in message and url not in message
    assert not WebhookEndpoint.objects.exists()


def test_it_accepts_a_public_https_target(api_a, no_loopback):
    response = api_a.post("/api/v1/webhooks", {"url": "https://93.184.215.14/hooks"}, format="json")
    assert response.status_code == 201, response.content


def test_it_allows_loopback_only_when_the_setting_says_so(api_a):
    response = api_a.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hooks"}, format="json")
    assert response.status_code == 201, response.content


def test_it_fails_a_delivery_to_a_target_that_became_private_without_posting(api_a, planned_a, settings):
    receiver = Receiver()
    try:
        assert api_a.post("/api/v1/webhooks", {"url": receiver.url}, format="json").status_code == 201
        settings.CARTWATCH = {**settings.CARTWATCH, "WEBHOOK_ALLOW_LOOPBACK": False}
        lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
        webhooks.webhooks_deliver_due(budget_seconds=5)
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == (WebhookStatus.FAILED, 1)
    assert delivery.last_error == "refused: must not point at a loopback address"
    assert receiver.received == []
