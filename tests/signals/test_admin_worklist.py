"""The physician's signal worklist in the admin: scoped to the centre, counted on the index, decided by actions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.models import AuditEntry, MalignancyEvent, SignalReview, SignalReviewStatus
from surveillance.signals.review import signal_reviews_escalate, signals_record
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult
from tests.signals.conftest import INFUSED, day

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:surveillance_signalreview_changelist"


@pytest.fixture
def login(client):
    def make(user):
        client.force_login(user)
        return client

    return make


@pytest.fixture
def reviews(centre_a, centre_b, make_patient, make_infusion) -> dict[str, SignalReview]:
    """At centre A a neutropenia (escalated) and a T-cell lymphoma; at centre B a solid tumour."""
    a = make_infusion(make_patient(centre_a), infusion_date=INFUSED)
    old = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)
    signals_record(a, ClinicalRecords(labs=(LabResult("751-8", 1.2, "10*3/uL", day(274)),)), source="fhir", now=old)
    signal_reviews_escalate(old + dt.timedelta(days=30))
    signals_record(a, ClinicalRecords(diagnoses=(Diagnosis("icd10", "C84.40", day(426)),)), source="fhir")
    b = make_infusion(make_patient(centre_b), infusion_date=INFUSED)
    signals_record(b, ClinicalRecords(diagnoses=(Diagnosis("icd10", "C34.90", day(700)),)), source="fhir")
    return {review.kind: review for review in SignalReview.objects.all()}


def _post_action(client, action: str, reviews, **fields):
    data = {"action": action, "_selected_action": [r.pk for r in reviews], **fields}
    return client.post(reverse(CHANGELIST), data)


def test_it_counts_the_centres_unresolved_reviews_on_the_index(login, physician_a, reviews):
    response = login(physician_a).get(reverse("admin:index"))
    tile = next(item for item in response.context["worklists"] if item.worklist.key == "signals")
    assert (tile.count, tile.escalated) == (2, 1)


def test_it_lists_only_the_centres_reviews_most_urgent_first(login, physician_a, reviews):
    response = login(physician_a).get(reverse(CHANGELIST), {"worklist": "signals"})
    assert [obj.kind for obj in response.context["cl"].result_list] == ["t_cell_lymphoma", "neutropenia"]
    assert b"escalated" in response.content
    assert b'value="dismiss"' in response.content  # the decisions are offered to a physician
    assert AuditEntry.objects.filter(action="list", object_type="signalreview", actor=physician_a).exists()


def test_it_shows_the_evidence_on_the_review_page_read_only(login, physician_a, reviews):
    review = reviews["neutropenia"]
    url = reverse("admin:surveillance_signalreview_change", args=[review.pk])
    client = login(physician_a)
    response = client.get(url)
    assert response.status_code == 200
    assert b"CTCAE grade 2" in response.content
    assert b'name="_save"' not in response.content
    assert client.post(url, {"reason": "edited around the decision"}).status_code == 403


def test_it_hides_another_centres_review(login, physician_b, reviews):
    url = reverse("admin:surveillance_signalreview_change", args=[reviews["t_cell_lymphoma"].pk])
    assert login(physician_b).get(url).status_code == 302  # the admin's answer for an object out of reach


def test_a_physician_confirms_a_second_cancer_from_the_worklist(login, physician_a, reviews):
    review = reviews["t_cell_lymphoma"]
    client = login(physician_a)
    form = _post_action(client, "confirm_second_cancer", [review])
    assert form.status_code == 200 and b"diagnosis_date" in form.content
    response = _post_action(
        client,
        "confirm_second_cancer",
        [review],
        apply="1",
        diagnosis_date=day(430).isoformat(),
        malignancy_type="t_cell_lymphoma",
    )
    assert response.status_code == 302
    review.refresh_from_db()
    event = MalignancyEvent.objects.get()
    assert (review.status, review.malignancy_event, event.reporting_steps.count()) == (
        SignalReviewStatus.CONFIRMED,
        event,
        4,
    )


def test_it_refuses_a_dismissal_without_a_reason_and_changes_nothing(login, physician_a, reviews):
    review = reviews["neutropenia"]
    response = _post_action(login(physician_a), "dismiss", [review], apply="1", reason="")
    assert response.status_code == 400
    review.refresh_from_db()
    assert review.status == SignalReviewStatus.OPEN


def test_a_physician_orders_the_work_up(login, physician_a, reviews):
    review = reviews["neutropenia"]
    _post_action(login(physician_a), "order_workup", [review], apply="1", items=["bone_marrow"])
    review.refresh_from_db()
    assert (review.status, review.workup, review.decided_by) == (
        SignalReviewStatus.WORKUP,
        ["bone_marrow"],
        physician_a,
    )


def test_a_coordinator_sees_the_worklist_but_cannot_decide(login, coordinator_a, reviews):
    client = login(coordinator_a)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert b'value="dismiss"' not in response.content
    review = reviews["neutropenia"]
    _post_action(client, "dismiss", [review], apply="1", reason="Not for me to say")
    review.refresh_from_db()
    assert review.status == SignalReviewStatus.OPEN


def test_the_patient_page_lists_the_patients_signal_reviews(login, physician_a, reviews):
    patient = reviews["neutropenia"].patient
    response = login(physician_a).get(reverse("admin:surveillance_patient_change", args=[patient.pk]))
    html = response.content.decode()
    assert 'id="signals"' in html
    for review in (reviews["neutropenia"], reviews["t_cell_lymphoma"]):
        assert reverse("admin:surveillance_signalreview_change", args=[review.pk]) in html
    assert 'cw-badge cw-escalated">escalated' in html
