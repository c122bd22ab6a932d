"""List filters share their form fields between requests (they are built once per process): nothing one request
sends or is refused stays behind for the next."""

from __future__ import annotations

from surveillance.api.filters import VisitFilter


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
