"""A reminder's idempotency key is unique in the database, through one index: every claim and every outcome moves
the row to new index entries, so an index no query uses is paid for with every message."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connection, transaction

from surveillance.models import Reminder
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC)


def test_it_refuses_a_second_reminder_with_the_same_key(centre_a, make_patient, open_visit):
    first = add_reminder(open_visit(make_patient(centre_a), NOW.date()), NOW)

    with pytest.raises(IntegrityError), transaction.atomic():
        Reminder.objects.bulk_create([Reminder(**{**_fields(first), "id": None})])
    assert Reminder.objects.filter(idempotency_key=first.idempotency_key).count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL adds a LIKE-pattern index")
def test_it_keeps_one_index_on_the_key():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
            [Reminder._meta.db_table, "%(idempotency_key%"],
        )
        definitions = [row[0] for row in cursor.fetchall()]

    assert len(definitions) == 1
    assert definitions[0].startswith("CREATE UNIQUE INDEX") and "pattern_ops" not in definitions[0]


def _fields(reminder: Reminder) -> dict:
    return {field.attname: getattr(reminder, field.attname) for field in Reminder._meta.concrete_fields}
