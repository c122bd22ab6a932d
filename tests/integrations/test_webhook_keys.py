"""A webhook delivery's idempotency key is unique in the database, through one index: every claim and every outcome
moves the row to new index entries, so an index no query uses is paid for with every delivery."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
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


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL adds a LIKE-pattern index")
def test_it_keeps_one_index_on_the_key():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [WebhookDelivery._meta.db_table, "%(idempotency_key%"],
        )
        definitions = [row[0] for row in cursor.fetchall()]

    assert len(definitions) == 1
    assert definitions[0].startswith("CREATE UNIQUE INDEX") and "pattern_ops" not in definitions[0]
