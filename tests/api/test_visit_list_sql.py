"""The visit list read by its own SQL (``visit_list_page``) lists what the ORM lists: the same visits, in the same
order, rendered as the serializer renders each visit, for every filter, ordering and caller."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.http import QueryDict

from surveillance.access.tenancy import scope_to_centres
from surveillance.api.filters import VisitFilter
from surveillance.api.serializers import VisitSerializer
from surveillance.care import lifecycle, planning
from surveillance.models import FollowUpVisit, VisitStatus


@pytest.fixture
def cohort(centre_a, centre_b, make_patient, make_infusion):
    """Two patients at centre A (one visit done with results, one cancelled) and one at centre B."""
    today = dt.date.today()
    infusions = []
    for centre, days_ago in ((centre_a, 60), (centre_a, 200), (centre_b, 60)):
        infusion = make_infusion(make_patient(centre), infusion_date=today - dt.timedelta(days=days_ago))
        planning.infusion_plan(infusion)
        infusions.append(infusion)
    open_visits = FollowUpVisit.objects.filter(infusion=infusions[0], status=VisitStatus.SCHEDULED).order_by("due_date")
    lifecycle.visit_mark_completed(open_visits[0], completed_on=today, results={"cbc": "normal", "ecog": 1})
    lifecycle.visit_cancel(open_visits[1], reason="moved away")
    return infusions


def listed(client, query: str) -> list[dict]:
    """Every row of the list, following ``next``."""
    rows, url = [], f"/api/v1/visits?page_size=7&{query}"
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content
        rows += answer.json()["results"]
        url = answer.json()["next"]
    return rows


def expected(centre_ids: list[int] | None, query: str, ordering: tuple[str, ...]) -> list[dict]:
    """What the ORM lists in these centres (None: all): django-filter's queryset, scoped, ordered, each visit
    serialized."""
    visits = FollowUpVisit.objects.select_related("infusion__patient__centre")
    visits = scope_to_centres(visits, centre_ids, "infusion__patient__centre")
    visits = VisitFilter(QueryDict(query), queryset=visits).qs.order_by(*ordering)
    return [dict(VisitSerializer(visit).data) for visit in visits]


QUERIES = [
    ("", ("due_date", "id")),
    ("status=scheduled", ("due_date", "id")),
    ("status=completed&status=cancelled", ("due_date", "id")),
    ("kind=clinic", ("due_date", "id")),
    ("due_after={soon}&due_before={later}", ("due_date", "id")),
    ("centre=a", ("due_date", "id")),
    ("centre=b", ("due_date", "id")),
    ("rule_code=M12", ("due_date", "id")),
    ("ordering=-due_date", ("-due_date", "id")),
    ("ordering=-window_end,due_date", ("-window_end", "due_date", "id")),
    ("ordering=-updated_at&status=scheduled", ("-updated_at", "id")),
    ("ordering=-id", ("-id",)),
]


@pytest.mark.parametrize(("query", "ordering"), QUERIES)
def test_it_lists_what_the_orm_lists(api_a, centre_a, cohort, query, ordering):
    today = dt.date.today()
    query = query.format(soon=today, later=today + dt.timedelta(days=200))
    assert listed(api_a, query) == expected([centre_a.pk], query, ordering)


def test_it_filters_by_patient_and_infusion_as_the_orm(api_a, centre_a, cohort):
    infusion = cohort[1]
    for query in (f"patient={infusion.patient_id}", f"infusion={infusion.pk}", f"patient={infusion.patient_id}.0"):
        rows = listed(api_a, query)
        assert rows and rows == expected([centre_a.pk], query, ("due_date", "id"))


def test_it_lists_nothing_for_an_id_no_row_can_have(api_a, cohort):
    assert listed(api_a, "patient=99999999999999999999") == []
    assert listed(api_a, "infusion=-99999999999999999999") == []


def test_it_lists_only_the_callers_centres(api_b, cohort):
    rows = listed(api_b, "")
    assert rows and {row["centre"] for row in rows} == {"b"}
    assert listed(api_b, f"infusion={cohort[0].pk}") == []


def test_it_lists_every_centre_to_a_superuser(staff_client, administrator, cohort):
    rows = listed(staff_client(administrator), "")
    assert {row["centre"] for row in rows} == {"a", "b"}
    assert rows == expected(None, "", ("due_date", "id"))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements")
def test_it_prepares_a_page_statement_and_keeps_its_plan(api_a, cohort):
    """Prepared from the first run, with the page's LIMIT written in, so that the server settles on one plan
    (its generic plan) instead of planning each execution."""
    for _ in range(7):
        assert api_a.get("/api/v1/visits?status=scheduled").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%followupvisit%"],
        )
        statements = cursor.fetchall()
    page = [row for row in statements if "status\" = 'scheduled'" in row[0]]
    assert page and all(statement.endswith("LIMIT 51") for statement, _, _ in page)
    assert sum(generic for _, generic, _ in page) >= 2  # the sixth and seventh runs took the kept plan
