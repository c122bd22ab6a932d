"""The outboxes' idempotency keys (reminders, webhook deliveries) are unique through one index each. Every claim and
every outcome moves an outbox row to new index entries, so a second index on the key, such as the LIKE-pattern
index PostgreSQL gets beside a ``unique=True`` text field, is paid for with every message and read by no query."""

from __future__ import annotations

import pytest
from django.db import connection

from surveillance.models import Reminder, WebhookDelivery

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL adds a LIKE-pattern index"),
]


@pytest.mark.parametrize("model", [Reminder, WebhookDelivery], ids=lambda model: model.__name__)
def test_it_keeps_one_index_on_the_key(model):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [model._meta.db_table, "%(idempotency_key%"],
        )
        definitions = [row[0] for row in cursor.fetchall()]

    assert len(definitions) == 1
    assert definitions[0].startswith("CREATE UNIQUE INDEX") and "pattern_ops" not in definitions[0]
