"""A visit page whose rows PostgreSQL writes (``api.visit_rows``) is, byte for byte, the page the serializer writes
for the same visits: whatever the rows hold (results of any JSON, text that needs escaping, times with and without
microseconds, in any order of the list), and written by DRF's renderer where orjson would write it otherwise."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from surveillance.api import visit_rows
from surveillance.api.serializers import VisitSerializer
from surveillance.api.visit_list import visit_list_page
from surveillance.care import lifecycle
from surveillance.models import FollowUpVisit, VisitStatus

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL writes the rows")

TRICKY_TEXT = 'quote " backslash \\ ✓ \u2028 \x01 \t </script>'


def serializer_page(answer) -> bytes:
    """The answer's page as DRF writes the serializer's rendering of its visits, with the answer's own links."""
    body = answer.json()
    ids = [row["id"] for row in body["results"]]
    visits = FollowUpVisit.objects.select_related("infusion__patient__centre").in_bulk(ids)
    data = {
        "next": body["next"],
        "previous": body["previous"],
        "results": [VisitSerializer(visits[pk]).data for pk in ids],
    }
    return JSONRenderer().render(data)


def open_visits(infusion):
    return FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date")


@pytest.fixture
def varied(planned_a):
    """Visits holding what PostgreSQL might write otherwise: results, escapes, a time on the whole second."""
    infusion = planned_a[1]
    today = dt.date.today()
    lifecycle.visit_mark_completed(
        open_visits(infusion)[0], completed_on=today, results={"cbc": "normal", "ecog": 1.5, "note": TRICKY_TEXT}
    )
    lifecycle.visit_cancel(open_visits(infusion)[0], reason=TRICKY_TEXT)
    whole_second = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    FollowUpVisit.objects.filter(pk=open_visits(infusion)[0].pk).update(updated_at=whole_second)
    return infusion


@pytest.mark.parametrize("ordering", ["", "&ordering=-updated_at", "&ordering=-window_end,due_date"])
def test_it_writes_the_page_the_serializer_writes(api_a, varied, ordering):
    url = f"/api/v1/visits?page_size=20{ordering}"
    while url:
        answer = api_a.get(url)
        assert answer.status_code == 200
        assert answer.content == serializer_page(answer)
        url = answer.json()["next"]


def test_it_writes_rows_in_postgresql_only_in_utc(varied):
    assert visit_rows.JSON in visit_list_page(None, {}, ("due_date", "id"), None, 5)[0]
    with timezone.override("America/New_York"):
        assert visit_rows.JSON not in visit_list_page(None, {}, ("due_date", "id"), None, 5)[0]


def test_it_leaves_to_drfs_renderer_what_orjson_writes_otherwise(api_a, planned_a):
    visit = open_visits(planned_a[1])[0]
    lifecycle.visit_mark_completed(
        visit, completed_on=dt.date.today(), results={"tiny": 2.5e-05, "huge": 2**70, "tenth": 0.1}
    )

    answer = api_a.get(f"/api/v1/visits?infusion={planned_a[1].pk}&status=completed")

    assert answer.status_code == 200
    assert answer.content == serializer_page(answer)
    assert b'"tiny":2.5e-05' in answer.content and b'"huge":1180591620717411303424' in answer.content
