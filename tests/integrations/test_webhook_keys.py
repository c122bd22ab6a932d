"""A webhook delivery's idempotency key is unique in the database, so that an event is delivered once however often
it is emitted (that the key has one index, not two: ``tests/db/test_key_indexes.py``)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveillance.integrations import webhooks
from surveillance.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(centre_a) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(centre=centre_a, url="http://127.0.0.1:9/hooks", secret="s" * 32)


def test_it_plans_an_event_once_however_often_it_is_emitted(endpoint, centre_a):
    for _ in range(2):
        webhooks.webhook_event_emit(centre_a.pk, WebhookEvent.VISIT_MISSED, "visit-missed-1-s0", {"visit": 1})

    assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 1


def test_it_refuses_a_second_delivery_with_the_same_key(endpoint):
    def delivery() -> WebhookDelivery:
        return WebhookDelivery(
            endpoint=endpoint,
            event=WebhookEvent.VISIT_MISSED,
            idempotency_key="visit-missed-1-s0:e1",
            payload={},
            next_attempt_at=timezone.now(),
        )

    delivery().save()
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookDelivery.objects.bulk_create([delivery()])
    assert WebhookDelivery.objects.count() == 1
