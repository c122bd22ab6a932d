"""The list an EHR polls, scheduled visits due in a window, is a range of the index of open visits' due dates: the
visit list's own statement writes the model's ``OPEN_DUE`` as that index holds it, so the database can use it.
Were the two to drift apart, each page would read every open visit instead."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.http import QueryDict

from surveillance.api.filters import VisitFilter
from surveillance.api.visit_list import visit_list_statement
from surveillance.care import planning
from surveillance.models import FollowUpVisit


@pytest.fixture
def planned(centre_a, make_patient, make_infusion) -> None:
    for days_ago in (30, 400, 900):
        infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date.today() - dt.timedelta(days=days_ago))
        planning.infusion_plan(infusion)


def plan_of(centre_ids: list[int], query: str, after: tuple | None = None) -> str:
    """The database's plan for the list's page of this query, told to read the visits in the page's order without
    sorting them (PostgreSQL), or through the open due-date index (SQLite, which finds no plan if it cannot)."""
    filters = VisitFilter(QueryDict(query), queryset=FollowUpVisit.objects.all())
    assert filters.is_valid(), filters.errors
    statement = visit_list_statement(centre_ids, filters.form.cleaned_data, ("due_date", "id"), after, 51)
    assert statement is not None
    sql, params = statement
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            table = connection.ops.quote_name(FollowUpVisit._meta.db_table)
            sql = sql.replace(f"FROM {table} v ", f"FROM {table} v INDEXED BY visit_open_due_idx ", 1)
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())


def reads_a_range_of_the_open_due_index(plan: str) -> bool:
    """The visits are read as a range of the index, in its order (PostgreSQL: no sort), bounded by the index's
    expression (SQLite: a search on it, not a scan through it)."""
    if connection.vendor == "postgresql":
        return "Index Scan using visit_open_due_idx" in plan and "Sort" not in plan
    return "SEARCH v USING INDEX visit_open_due_idx (<expr>" in plan


@pytest.mark.django_db(transaction=False)
def test_it_reads_a_window_of_scheduled_visits_through_the_open_due_index(centre_a, planned):
    today = dt.date.today()
    query = f"status=scheduled&due_after={today}&due_before={today + dt.timedelta(days=14)}"

    plan = plan_of([centre_a.pk], query)

    assert reads_a_range_of_the_open_due_index(plan), plan


@pytest.mark.django_db(transaction=False)
def test_it_reads_the_next_page_through_the_same_index(centre_a, planned):
    today = dt.date.today()
    query = f"status=scheduled&due_after={today}&due_before={today + dt.timedelta(days=400)}"

    plan = plan_of([centre_a.pk], query, after=(today + dt.timedelta(days=30), 1))

    assert reads_a_range_of_the_open_due_index(plan), plan
