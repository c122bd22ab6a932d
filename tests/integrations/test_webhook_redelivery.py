"""The webhook delivery log in the admin: administrators see their centres' deliveries and redeliver ended ones
through the outbox (the normal delivery run posts them to a real loopback receiver); clinical roles never see it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from surveillance.care import lifecycle
from surveillance.integrations import webhooks
from surveillance.models import AuditEntry, CentreMembership, WebhookDelivery, WebhookStatus
from tests.integrations.test_webhooks import Receiver, endpoint, receiver  # noqa: F401

pytestmark = pytest.mark.django_db
LIST = reverse("admin:surveillance_webhookdelivery_changelist")


def _signed_in(user) -> Client:
    client = Client(REMOTE_ADDR="10.1.2.3")
    client.force_login(user)
    return client


@pytest.fixture
def failed(endpoint, receiver, planned_a) -> WebhookDelivery:  # noqa: F811
    """A visit.missed event the receiver refused (a 400 fails it at once)."""
    receiver.statuses.append(400)
    lifecycle.visit_mark_missed(planned_a[1].visits.filter(status="scheduled").first(), reason="window closed")
    assert webhooks.webhooks_deliver_due(budget_seconds=5) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == (WebhookStatus.FAILED, 400)
    return delivery


def test_it_redelivers_a_failed_delivery_through_the_outbox(failed, receiver, administrator):  # noqa: F811
    client = _signed_in(administrator)
    listing = client.get(LIST).content.decode()
    assert "visit.missed" in listing and "HTTP 400" in listing and receiver.url in listing

    response = client.post(LIST, {"action": "redeliver", "_selected_action": [failed.pk]}, follow=True)
    assert "1 of 1 deliveries queued again" in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (WebhookStatus.PENDING, 0)
    assert len(receiver.received) == 1  # nothing posted from the admin itself

    assert webhooks.webhooks_deliver_due(budget_seconds=5) == 1
    first, again = receiver.received
    assert again["headers"]["X-CartWatch-Delivery"] == first["headers"]["X-CartWatch-Delivery"]
    assert again["body"] == first["body"]
    failed.refresh_from_db()
    assert failed.status == WebhookStatus.DELIVERED
    entry = AuditEntry.objects.get(action="webhook_redeliver")
    assert entry.actor == administrator and entry.object_id == str(failed.pk)
    assert entry.changes == {"status": ["failed", "pending"], "attempts": 1}


def test_it_leaves_a_delivery_on_its_way_alone(failed, administrator):
    WebhookDelivery.objects.filter(pk=failed.pk).update(status=WebhookStatus.PENDING)
    assert webhooks.webhook_redeliver([failed.pk], by=administrator) == 0
    assert not AuditEntry.objects.filter(action="webhook_redeliver").exists()


def test_it_shows_an_administrator_only_the_deliveries_of_their_centres(failed, django_user_model, centre_b):
    admin_b = django_user_model.objects.create_user(username="admin-b", password="x", is_staff=True)
    admin_b.user_permissions.set(
        Permission.objects.filter(codename__in=["view_webhookdelivery", "change_webhookdelivery"])
    )
    CentreMembership.objects.create(user=admin_b, centre=centre_b, role="coordinator")
    client = _signed_in(admin_b)
    assert list(client.get(LIST).context["cl"].result_list) == []
    client.post(LIST, {"action": "redeliver", "_selected_action": [failed.pk]})
    page = client.get(reverse("admin:surveillance_webhookdelivery_change", args=[failed.pk]))
    assert page.status_code == 302 and page["Location"] == reverse("admin:index")  # "does not exist"
    failed.refresh_from_db()
    assert failed.status == WebhookStatus.FAILED


@pytest.mark.parametrize("persona", ["coordinator_a", "physician_a", "auditor"])
def test_it_keeps_clinical_roles_off_the_log(request, failed, persona):
    client = _signed_in(request.getfixturevalue(persona))
    assert client.get(LIST).status_code == 403
    assert client.post(LIST, {"action": "redeliver", "_selected_action": [failed.pk]}).status_code == 403
    failed.refresh_from_db()
    assert failed.status == WebhookStatus.FAILED
