"""Lists reuse what does not depend on the request, built once per process (the filters' form fields, the visit
list's scoped base query): nothing one request sends, is refused or is shown stays behind for the next."""

from __future__ import annotations

from surveillance.api.filters import VisitFilter
from surveillance.care import lifecycle


def test_it_judges_each_request_on_its_own_values(api_a, planned_a):
    scheduled = api_a.get("/api/v1/visits?status=scheduled&page_size=500").json()["results"]
    refused = api_a.get("/api/v1/visits?status=lost&due_after=yesterday")
    assert refused.status_code == 400 and set(refused.json()["fields"]) == {"status", "due_after"}
    again = api_a.get("/api/v1/visits?status=scheduled&page_size=500")
    assert again.status_code == 200 and again.json()["results"] == scheduled
    refused = api_a.get("/api/v1/visits?kind=nowhere")
    assert refused.status_code == 400 and set(refused.json()["fields"]) == {"kind"}


def test_it_gives_each_form_its_own_values_and_errors_but_the_same_fields():
    good, bad = VisitFilter({"status": ["scheduled"]}), VisitFilter({"status": ["lost"]})
    assert good.is_valid() and not bad.is_valid()
    assert good.form.cleaned_data["status"] == ["scheduled"] and set(bad.form.errors) == {"status"}
    assert good.form.fields["status"] is bad.form.fields["status"]


def test_it_shows_each_caller_its_own_visits_as_they_are_now(api_a, api_b, planned_a, staff_client, physician_b):
    rows = api_a.get("/api/v1/visits?page_size=500").json()["results"]
    assert rows and api_b.get("/api/v1/visits").json()["results"] == []
    assert staff_client(physician_b).get("/api/v1/visits").json()["results"] == []
    visit = planned_a[1].visits.get(pk=next(row["id"] for row in rows if row["status"] == "scheduled"))
    lifecycle.visit_cancel(visit, reason="Moved abroad")
    again = {row["id"]: row for row in api_a.get("/api/v1/visits?page_size=500").json()["results"]}
    assert again[visit.pk]["status"] == "cancelled" and len(again) == len(rows)
