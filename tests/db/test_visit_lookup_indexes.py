"""The visit table keeps no index a planned visit need not have: an infusion's visits are read through the
identity's unique index, which leads with the infusion, and the visits a user changed through an index of those
visits alone. Every index entry is a write for each of the tens of millions of visits a registry plans."""

from __future__ import annotations

import pytest
from django.db import connection

from surveillance.models import FollowUpVisit
from tests.db.plans import index_plan

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner and partial indexes"),
]


def test_it_reads_an_infusions_visits_through_the_identity_index():
    sql, params = FollowUpVisit.objects.filter(infusion_id__in=[1, 2]).query.sql_with_params()

    assert "visit_identity_unique" in index_plan(sql, list(params))


def test_it_clears_a_deleted_users_changes_through_the_index_of_changed_visits():
    """What Django runs when a user is deleted (the foreign key sets NULL), and what the database checks."""
    table, column = FollowUpVisit._meta.db_table, FollowUpVisit._meta.get_field("status_changed_by").column

    assert "visit_changed_by_idx" in index_plan(f'UPDATE "{table}" SET "{column}" = NULL WHERE "{column}" IN (%s)', [7])
    assert "visit_changed_by_idx" in index_plan(f'SELECT 1 FROM "{table}" WHERE "{column}" = %s', [7])


def test_it_plans_a_visit_without_an_entry_in_the_changed_visits_index():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'visit_changed_by_idx'")
        (definition,) = cursor.fetchone()

    assert definition.endswith("WHERE (status_changed_by_id IS NOT NULL)")
