"""List pages by keyset: every row once, in order, across ties, both ways; a cursor names a row, not an offset."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
from django.db import connection
from rest_framework.utils.urls import replace_query_param

from surveillance.api.pagination import ApiCursorPagination
from surveillance.care import planning
from surveillance.models import FollowUpVisit

#: Five patients infused on the same day: each of their time points falls due on the same day for all five.
SAME_DAY = 5


@pytest.fixture
def tied_visits(centre_a, make_patient, make_infusion) -> list[int]:
    """Scheduled visits of centre A in (due date, id) order, five sharing each due date."""
    infused = dt.date.today() - dt.timedelta(days=10)
    for _ in range(SAME_DAY):
        planning.infusion_plan(make_infusion(make_patient(centre_a), infusion_date=infused))
    return list(
        FollowUpVisit.objects.filter(status="scheduled").order_by("due_date", "id").values_list("id", flat=True)
    )


def walk(client, url: str, link: str) -> list[list[int]]:
    pages = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content
        pages.append([row["id"] for row in answer.json()["results"]])
        url = answer.json()[link]
    return pages


def test_it_pages_every_row_once_in_order_across_ties(api_a, tied_visits):
    pages = walk(api_a, "/api/v1/visits?status=scheduled&page_size=7", "next")
    assert [pk for page in pages for pk in page] == tied_visits
    assert all(len(page) == 7 for page in pages[:-1])


def test_it_pages_back_through_the_previous_links(api_a, tied_visits):
    forward = walk(api_a, "/api/v1/visits?status=scheduled&page_size=7", "next")
    last = api_a.get("/api/v1/visits?status=scheduled&page_size=7")
    for _ in forward[1:]:
        last = api_a.get(last.json()["next"])
    backward = walk(api_a, last.json()["previous"], "previous")
    assert backward == forward[-2::-1]


def test_it_pages_a_mixed_direction_ordering(api_a, tied_visits):
    pages = walk(api_a, "/api/v1/visits?status=scheduled&ordering=-window_end&page_size=6", "next")
    expected = list(
        FollowUpVisit.objects.filter(pk__in=tied_visits).order_by("-window_end", "id").values_list("id", flat=True)
    )
    assert [pk for page in pages for pk in page] == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements")
def test_it_reads_a_page_after_the_cursor_row_not_past_an_offset(api_a, tied_visits):
    first = api_a.get("/api/v1/visits?status=scheduled&page_size=3").json()
    assert api_a.get(first["next"]).status_code == 200
    # the page statements are prepared: their text is the server's
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%followupvisit%"])
        statements = [row[0] for row in cursor.fetchall()]
    after = [s for s in statements if re.search(r"\([^()]*due_date[^()]*id[^()]*\) > \(\$\d+, \$\d+\)", s)]
    assert after and not any("OFFSET" in s for s in statements)


def test_it_keeps_the_next_page_when_a_row_before_the_cursor_leaves_the_list(api_a, tied_visits):
    first = api_a.get("/api/v1/visits?status=scheduled&page_size=7").json()
    # the sixth row shares its due date with the seventh, where the first page ended: an offset past that date's
    # rows would now skip one that was never sent
    cancelled = api_a.post(f"/api/v1/visits/{tied_visits[5]}/cancel", {"reason": "moved away"}, format="json")
    assert cancelled.status_code == 200
    second = api_a.get(first["next"]).json()["results"]
    assert [row["id"] for row in second] == tied_visits[7:14]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        base64.b64encode(b"p=2026-01-01").decode(),  # the position of another cursor scheme
        base64.b64encode(b'p=["2026-01-01"]').decode(),  # one value where the ordering has two
        base64.b64encode(b'p=["someday","3"]').decode(),
        base64.b64encode(b'p=["2026-01-01",null]').decode(),
    ],
)
def test_it_answers_a_bad_cursor_with_a_field_error(api_a, tied_visits, cursor):
    response = api_a.get("/api/v1/visits", {"cursor": cursor})
    assert response.status_code == 400
    assert response.json()["fields"] == {"cursor": ["invalid cursor"]}


@pytest.mark.parametrize(
    "url",
    [
        "http://testserver/api/v1/visits",
        "http://testserver/api/v1/visits?status=scheduled&due_after=2026-12-01&page_size=50",
        "http://testserver/api/v1/visits?cursor=old&ordering=-due_date&status=scheduled&status=missed",
        "http://testserver/api/v1/visits?a=&zeta=%C3%A9t%C3%A9+x&centre=a%26b&cursor=&b=1#frag",
    ],
)
def test_it_writes_the_links_as_drf_writes_them(url):
    paginator = ApiCursorPagination()
    paginator.base_url = url
    for encoded in ("cD0lNUIlMjIxJTIyJTVE", "cj0xJnA9JTVCJTIyMjAyNi0xMi0wMSUyMiUyQyUyMjclMjIlNUQ="):
        assert paginator.url_with_cursor(encoded) == replace_query_param(url, "cursor", encoded)
