"""Visits through the API: filters, record as done with results, reschedule within the window, cancel with a reason."""

from __future__ import annotations

import datetime as dt

from surveillance.care import lifecycle
from surveillance.models import AuditEntry, FollowUpVisit, VisitStatus


def open_visit(infusion) -> FollowUpVisit:
    return FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date").first()


def test_it_filters_by_status_due_range_kind_centre_and_patient(api_a, planned_a):
    patient, infusion = planned_a
    visit = open_visit(infusion)
    query = (
        f"?status=scheduled&kind={visit.kind}&due_after={visit.due_date}&due_before={visit.due_date}"
        f"&centre=a&patient={patient.pk}"
    )
    rows = api_a.get("/api/v1/visits" + query).json()["results"]
    assert visit.pk in [row["id"] for row in rows]
    assert all(row["status"] == "scheduled" and row["due_date"] == str(visit.due_date) for row in rows)
    assert api_a.get("/api/v1/visits?centre=b").json()["results"] == []


def test_it_names_a_bad_filter_value(api_a, planned_a):
    response = api_a.get("/api/v1/visits?status=lost&due_after=yesterday")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"status", "due_after"}


def test_it_records_a_visit_as_done_with_results(api_a, planned_a):
    visit = open_visit(planned_a[1])
    response = api_a.post(
        f"/api/v1/visits/{visit.pk}/complete",
        {"completed_on": dt.date.today().isoformat(), "results": {"cbc": "normal", "ecog": 1}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["results"]) == ("completed", {"cbc": "normal", "ecog": 1})
    assert AuditEntry.objects.filter(action="completed", object_id=str(visit.pk), actor_label="token:epic-a").exists()


def test_it_refuses_a_completion_in_the_future(api_a, planned_a):
    visit = open_visit(planned_a[1])
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    response = api_a.post(f"/api/v1/visits/{visit.pk}/complete", {"completed_on": tomorrow}, format="json")
    assert response.status_code == 400 and "completed_on" in response.json()["fields"]


def test_it_reschedules_within_the_window_only(api_a, planned_a):
    visit = open_visit(planned_a[1])
    outside = visit.window_end + dt.timedelta(days=1)
    response = api_a.post(f"/api/v1/visits/{visit.pk}/reschedule", {"due_date": outside.isoformat()}, format="json")
    assert response.status_code == 400 and "due_date" in response.json()["fields"]
    inside = visit.window_start if visit.window_start != visit.due_date else visit.window_end
    response = api_a.post(f"/api/v1/visits/{visit.pk}/reschedule", {"due_date": inside.isoformat()}, format="json")
    assert response.status_code == 200
    assert (response.json()["due_date"], response.json()["sequence"]) == (inside.isoformat(), 1)


def test_it_cancels_with_a_reason_and_then_refuses_a_second_action(api_a, planned_a):
    visit = open_visit(planned_a[1])
    assert api_a.post(f"/api/v1/visits/{visit.pk}/cancel", {"reason": ""}, format="json").status_code == 400
    response = api_a.post(f"/api/v1/visits/{visit.pk}/cancel", {"reason": "Moved abroad"}, format="json")
    assert response.json()["status"] == "cancelled"
    again = api_a.post(f"/api/v1/visits/{visit.pk}/cancel", {"reason": "again"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_it_does_not_let_visits_be_written_directly(api_a, planned_a):
    visit = open_visit(planned_a[1])
    assert api_a.patch(f"/api/v1/visits/{visit.pk}", {"status": "completed"}, format="json").status_code == 405


def test_it_lists_each_visit_as_its_own_page_shows_it(api_a, planned_a):
    visit = open_visit(planned_a[1])
    lifecycle.visit_mark_completed(visit, completed_on=dt.date.today(), results={"cbc": "normal", "ecog": 1})
    rows = api_a.get("/api/v1/visits?page_size=500").json()["results"]
    assert len(rows) == planned_a[1].visits.count()
    for row in rows:
        assert row == api_a.get(f"/api/v1/visits/{row['id']}").json()
    assert {"status": "completed", "completed_on": dt.date.today().isoformat()}.items() <= next(
        row for row in rows if row["id"] == visit.pk
    ).items()


def test_it_records_a_visit_planned_after_its_window_closed(api_a, planned_a):
    visit = FollowUpVisit.objects.filter(infusion=planned_a[1], status=VisitStatus.UNRECORDED).first()
    response = api_a.post(
        f"/api/v1/visits/{visit.pk}/complete",
        {"completed_on": visit.due_date.isoformat(), "results": {"cbc": "normal"}},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "completed"
    other = FollowUpVisit.objects.filter(infusion=planned_a[1], status=VisitStatus.UNRECORDED).first()
    response = api_a.post(f"/api/v1/visits/{other.pk}/cancel", {"reason": "Not done (clinic notes)"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_it_shows_each_assessment_with_its_label_in_list_and_page(api_a, planned_a):
    visit = open_visit(planned_a[1])
    row = next(r for r in api_a.get("/api/v1/visits?page_size=500").json()["results"] if r["id"] == visit.pk)
    shown = api_a.get(f"/api/v1/visits/{visit.pk}").json()["assessments_display"]
    assert row["assessments_display"] == shown and [item["code"] for item in shown] == visit.assessments
    assert all(item["label"] and item["label"] != item["code"] for item in shown)
