"""A reminder's idempotency key is unique in the database, so that a message is planned once however often it is
asked for (that the key has one index, not two: ``tests/db/test_key_indexes.py``)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from surveillance.models import Reminder
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC)


def test_it_refuses_a_second_reminder_with_the_same_key(centre_a, make_patient, open_visit):
    first = add_reminder(open_visit(make_patient(centre_a), NOW.date()), NOW)

    with pytest.raises(IntegrityError), transaction.atomic():
        Reminder.objects.bulk_create([Reminder(**{**_fields(first), "id": None})])
    assert Reminder.objects.filter(idempotency_key=first.idempotency_key).count() == 1


def _fields(reminder: Reminder) -> dict:
    return {field.attname: getattr(reminder, field.attname) for field in Reminder._meta.concrete_fields}
