"""The bulk visit export in keyset pages: every page ends with a marker line, and only the last one says the
export is complete, so a page cut short or a page with more to come can never pass for the whole export."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from surveillance.models import FollowUpVisit

RANGE = "due_after=2020-01-01&due_before=2069-12-31"  # the whole planned schedule


def lines_of(response) -> list[dict]:
    return [json.loads(line) for line in response.content.decode().splitlines()]


def pages(client, url: str) -> list:
    """Every page of an export, following each page's ``next`` until one says it is complete."""
    out = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        out.append(response)
        marker = lines_of(response)[-1]
        url = marker.get("next")
    return out


def test_it_marks_the_last_page_complete_and_only_the_last(api_a, planned_a):
    _, infusion = planned_a
    total = infusion.visits.count()
    got = pages(api_a, f"/api/v1/export/visits.ndjson?{RANGE}&page_size=7")
    assert len(got) == -(-total // 7) > 2
    markers = [lines_of(page)[-1] for page in got]
    assert all(m["resourceType"] == "ExportPage" for m in markers)
    assert [m["complete"] for m in markers] == [False] * (len(got) - 1) + [True]
    assert all("next" not in m for m in markers[-1:]) and all(m["next"] for m in markers[:-1])
    assert all(page.has_header("Link") for page in got[:-1]) and not got[-1].has_header("Link")
    assert got[0]["Link"] == f'<{markers[0]["next"]}>; rel="next"'
    assert [m["count"] for m in markers[:-1]] == [7] * (len(got) - 1)


def test_it_exports_every_visit_once_across_the_pages_in_order(api_a, planned_a):
    _, infusion = planned_a
    rows = [row for page in pages(api_a, f"/api/v1/export/visits.ndjson?{RANGE}&page_size=5") for row in lines_of(page)]
    visits = [row for row in rows if "visit_id" in row]
    expected = list(
        FollowUpVisit.objects.filter(infusion=infusion).order_by("due_date", "pk").values_list("pk", flat=True)
    )
    assert [row["visit_id"] for row in visits] == expected


def test_it_never_looks_complete_when_a_page_is_cut_short(api_a, planned_a):
    _, infusion = planned_a
    response = api_a.get(f"/api/v1/export/visits.ndjson?{RANGE}")
    body = response.content
    assert int(response["Content-Length"]) == len(body)
    marker = {"resourceType": "ExportPage", "complete": True, "count": infusion.visits.count()}
    assert json.loads(body.splitlines()[-1]) == marker and says_complete(body)
    assert not any(says_complete(body[:cut]) for cut in range(len(body)))  # wherever the connection drops


def says_complete(body: bytes) -> bool:
    """The client's rule, as the Integration guide states it: the body ends with a whole marker line (its newline
    included) that says the export is complete."""
    if not body.endswith(b"\n"):
        return False
    try:
        last = json.loads(body.splitlines()[-1])
    except ValueError:
        return False
    return last.get("resourceType") == "ExportPage" and last.get("complete") is True


def test_it_keeps_the_range_and_centre_in_the_next_link(api_a, planned_a):
    response = api_a.get("/api/v1/export/visits.ndjson?centre=a&page_size=1&due_after=2000-01-01")
    query = parse_qs(urlsplit(lines_of(response)[-1]["next"]).query)
    assert query["centre"] == ["a"] and query["due_after"] == ["2000-01-01"] and query["page_size"] == ["1"]
    assert query["due_before"] and query["cursor"]


def test_it_refuses_a_bad_cursor_and_a_page_size_out_of_bounds(api_a, planned_a):
    for page_size in ("5001", "0", "²"):
        response = api_a.get(f"/api/v1/export/visits.ndjson?cursor=not-a-cursor&page_size={page_size}")
        assert response.status_code == 400
        assert response.json()["fields"] == {
            "cursor": ["invalid cursor"],
            "page_size": ["a whole number from 1 to 5000"],
        }


def test_it_gives_another_centre_an_empty_complete_page(api_b, planned_a):
    response = api_b.get(f"/api/v1/export/visits.ndjson?{RANGE}")
    assert lines_of(response) == [{"resourceType": "ExportPage", "complete": True, "count": 0}]
