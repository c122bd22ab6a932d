"""The audit trail cannot be rewritten: the queryset refuses bulk updates and deletes on every database, and on
PostgreSQL the database itself refuses UPDATE and DELETE of a row, even as raw SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from surveillance.models import AuditEntry
from surveillance.models.audit import AppendOnlyError
from tests.conftest import missing_service


@pytest.fixture
def entry(db) -> AuditEntry:
    return AuditEntry.objects.create(actor_label="system", action="view", object_type="patient", object_id="42")


@pytest.fixture
def postgresql(db) -> None:
    if connection.vendor != "postgresql":
        missing_service("the audit trigger is PostgreSQL's (set DATABASE_URL)")


def test_it_refuses_a_queryset_update(entry):
    with pytest.raises(AppendOnlyError, match="cannot be updated"):
        AuditEntry.objects.filter(pk=entry.pk).update(action="edited")
    assert AuditEntry.objects.get(pk=entry.pk).action == "view"


def test_it_refuses_a_queryset_delete(entry):
    with pytest.raises(AppendOnlyError, match="cannot be deleted"):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_it_refuses_rewriting_or_deleting_one_entry(entry):
    entry.action = "edited"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()


@pytest.mark.services
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE surveillance_auditentry SET action = 'edited' WHERE id = %s",
        "DELETE FROM surveillance_auditentry WHERE id = %s",
    ],
)
def test_it_refuses_raw_sql_changes_in_the_database(postgresql, entry, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [entry.pk])
    row = AuditEntry.objects.filter(pk=entry.pk).values_list("action", "object_id").get()
    assert row == ("view", "42")


@pytest.mark.services
def test_it_still_takes_new_entries_in_the_database(postgresql, entry):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO surveillance_auditentry (at, actor_label, action, object_type, object_id, changes)"
            " VALUES (now(), 'system', 'view', 'patient', '43', '{}')"
        )
    assert AuditEntry.objects.filter(object_id="43").exists()
