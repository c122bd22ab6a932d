"""A coordinator of centre B sees none of centre A's patients anywhere in the admin: lists, search,
autocomplete, pages, worklist counts, dashboard figures, exports."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.care import cohort, lifecycle, reporting
from surveillance.models import FollowUpVisit, PatientRequest, Role
from tests.conftest import _staff

pytestmark = pytest.mark.django_db
SECRET_NAME = "Zebediah"
LISTS = (
    "patient",
    "infusion",
    "riskflag",
    "contactattempt",
    "followupvisit",
    "visitchange",
    "conditiondecision",
    "patientrequest",
    "reminder",
    "delivery",
    "malignancyevent",
    "reportingstep",
)


@pytest.fixture
def coordinator_b(django_user_model, centre_b):
    return _staff(django_user_model, "coordinator-b", Role.COORDINATOR, centre_b)


@pytest.fixture
def two_centres(planned, centre_a, centre_b, today, coordinator_a):
    a = planned(centre_a, days_ago=95, flags=["clonal_haematopoiesis"], given_name=SECRET_NAME, mrn="A-SECRET-1")
    visit = FollowUpVisit.objects.get(infusion=a, rule_code="M3")
    lifecycle.visit_reschedule(visit, new_date=visit.due_date + dt.timedelta(days=1), by=coordinator_a)
    PatientRequest.objects.create(visit=visit, kind="confirm")
    lifecycle.contact_attempt_log(a.patient, method="phone", reached=False, by=coordinator_a)
    reporting.malignancy_event_record(a, diagnosis_date=today - dt.timedelta(days=20), malignancy_type="solid")
    b = planned(centre_b, days_ago=95, given_name="Bea", mrn="B-1")
    return {"a": a, "b": b, "a_visit": visit}


def _leaks(content: bytes, searched: str = "") -> bool:
    """Centre A's patient's name or MRN on the page (other than the search term the user typed, echoed back)."""
    return any(marker.encode() in content for marker in (SECRET_NAME, "A-SECRET-1") if marker != searched)


def test_it_shows_no_row_of_centre_a_in_any_list_or_search(login, coordinator_b, two_centres):
    client = login(coordinator_b)
    for model in LISTS:
        url = reverse(f"admin:surveillance_{model}_changelist")
        for params in ({}, {"q": SECRET_NAME}, {"q": "A-SECRET-1"}):
            response = client.get(url, params)
            assert response.status_code == 200, model
            assert not _leaks(response.content, params.get("q", "")), model
            rows = response.context["cl"].result_list
            assert all(_centre_of(row) != two_centres["a"].patient.centre_id for row in rows), model


def _centre_of(row) -> int:
    for path in ("centre_id", "patient", "infusion", "visit", "reminder", "event"):
        if path == "centre_id" and hasattr(row, "centre_id"):
            return row.centre_id
        if hasattr(row, path) and path != "centre_id":
            return _centre_of(getattr(row, path))
    raise AssertionError(f"no centre for {row!r}")


def test_it_answers_no_centre_a_patient_in_autocomplete(login, coordinator_b, two_centres):
    client = login(coordinator_b)
    for model, field in (("infusion", "patient"), ("contactattempt", "patient"), ("malignancyevent", "infusion")):
        response = client.get(
            reverse("admin:autocomplete"),
            {"app_label": "surveillance", "model_name": model, "field_name": field, "term": SECRET_NAME},
        )
        assert response.status_code in (200, 403)
        assert not _leaks(response.content)
    own = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "surveillance", "model_name": "infusion", "field_name": "patient", "term": "Bea"},
    )
    assert [r["id"] for r in own.json()["results"]] == [str(two_centres["b"].patient_id)]


def test_it_opens_no_page_of_centre_a(login, coordinator_b, two_centres):
    client = login(coordinator_b)
    a = two_centres["a"]
    patient_page = client.get(reverse("admin:surveillance_patient_change", args=[a.patient_id]))
    assert patient_page.status_code == 302 and not _leaks(patient_page.content)
    assert (
        client.get(reverse("admin:surveillance_followupvisit_change", args=[two_centres["a_visit"].pk])).status_code
        == 404
    )
    assert client.get(reverse("admin:surveillance_patient_log_attempt", args=[a.patient_id])).status_code == 404
    event = a.malignancy_events.get()
    assert client.get(reverse("admin:surveillance_malignancyevent_change", args=[event.pk])).status_code == 302


def test_it_counts_only_centre_b_on_the_index_and_the_dashboard(login, coordinator_b, centre_b, two_centres, today):
    client = login(coordinator_b)
    counts = {i.worklist.key: i.count for i in client.get(reverse("admin:index")).context["worklists"]}
    assert counts["requests"] == 0 and counts["reporting"] == 0 and counts["ladder"] == 0
    dashboard = client.get(reverse("admin:dashboard"))
    figures = dashboard.context["figures"]
    assert figures.incidence.infusions == 1 and figures.incidence.events == 0
    assert sum(figures.patients_by_status.values()) == 1
    assert figures.reminder_outcomes == cohort.cohort_figures([centre_b.pk], today).reminder_outcomes
    assert not _leaks(dashboard.content)
    foreign = client.get(reverse("admin:dashboard"), {"centre": two_centres["a"].patient.centre_id})
    assert foreign.context["figures"].incidence.infusions == 1  # a centre of someone else is ignored


def test_it_exports_none_of_centre_a(login, coordinator_b, two_centres):
    client = login(coordinator_b)
    a = two_centres["a"]
    visits = client.post(
        reverse("admin:surveillance_followupvisit_changelist"),
        {"action": "export_csv", "_selected_action": [two_centres["a_visit"].pk]},
    )
    patients = client.post(
        reverse("admin:surveillance_patient_changelist"),
        {"action": "export_csv", "_selected_action": [a.patient_id]},
    )
    for response in (visits, patients):
        assert not _leaks(response.content)
        if response.get("Content-Type", "").startswith("text/csv"):
            assert len(response.content.decode().strip().splitlines()) == 1  # header only
    own = client.post(
        reverse("admin:surveillance_patient_changelist"),
        {"action": "export_csv", "_selected_action": [two_centres["b"].patient_id]},
    )
    assert own["Content-Type"].startswith("text/csv") and b"B-1" in own.content
