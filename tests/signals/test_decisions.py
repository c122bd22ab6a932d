"""A physician decides a review: confirm (malignancy event and reporting steps), order the work-up, or dismiss."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.models import AuditEntry, MalignancyEvent, ReportingStep, SignalReview, SignalReviewStatus
from surveillance.models.patients import PatientStatus
from surveillance.signals.review import (
    SignalError,
    signal_review_confirm,
    signal_review_dismiss,
    signal_review_order_workup,
    signals_record,
)
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult
from tests.signals.conftest import INFUSED, day

pytestmark = pytest.mark.django_db


@pytest.fixture
def infusion(centre_a, make_patient, make_infusion):
    return make_infusion(make_patient(centre_a), infusion_date=INFUSED)


@pytest.fixture
def tcl_review(infusion) -> SignalReview:
    signals_record(infusion, ClinicalRecords(diagnoses=(Diagnosis("icd10", "C84.40", day(426)),)), source="fhir")
    return SignalReview.objects.get()


def test_it_confirms_a_second_cancer_opening_the_event_and_its_reporting_steps(tcl_review, physician_a):
    event = signal_review_confirm(
        tcl_review, by=physician_a, diagnosis_date=day(430), malignancy_type="t_cell_lymphoma"
    )
    tcl_review.refresh_from_db()
    assert (tcl_review.status, tcl_review.malignancy_event, tcl_review.decided_by) == (
        SignalReviewStatus.CONFIRMED,
        event,
        physician_a,
    )
    assert ReportingStep.objects.filter(event=event).count() == 4
    assert AuditEntry.objects.filter(action="signal_confirmed", actor=physician_a).exists()


def test_it_refuses_a_diagnosis_before_the_infusion_and_records_nothing(tcl_review, physician_a):
    with pytest.raises(SignalError, match="on or after the infusion"):
        signal_review_confirm(tcl_review, by=physician_a, diagnosis_date=day(-3), malignancy_type="t_cell_lymphoma")
    assert not MalignancyEvent.objects.exists()
    tcl_review.refresh_from_db()
    assert tcl_review.status == SignalReviewStatus.OPEN


def test_it_refuses_a_diagnosis_after_the_recorded_death(tcl_review, physician_a):
    patient = tcl_review.patient
    patient.status, patient.status_date = PatientStatus.DECEASED, day(428)
    patient.save()
    with pytest.raises(SignalError, match="recorded death"):
        signal_review_confirm(tcl_review, by=physician_a, diagnosis_date=day(430), malignancy_type="t_cell_lymphoma")
    assert not MalignancyEvent.objects.exists()


def test_it_lets_only_one_decision_win(tcl_review, physician_a):
    stale = SignalReview.objects.get(pk=tcl_review.pk)
    signal_review_dismiss(tcl_review, by=physician_a, reason="Coding error, the biopsy showed reactive nodes")
    with pytest.raises(SignalError, match="already been decided"):
        signal_review_confirm(stale, by=physician_a, diagnosis_date=day(430), malignancy_type="t_cell_lymphoma")
    assert not MalignancyEvent.objects.exists()


def test_it_records_the_work_up_ordered_and_keeps_the_review_for_later_results(infusion, physician_a):
    signals_record(infusion, ClinicalRecords(labs=(LabResult("709-8", 3, "%", day(200)),)), source="fhir")
    review = SignalReview.objects.get()
    signal_review_order_workup(review, by=physician_a, items=["bone_marrow"], note="with myeloid NGS panel")
    review.refresh_from_db()
    assert (review.status, review.workup) == (SignalReviewStatus.WORKUP, ["bone_marrow"])
    signals_record(infusion, ClinicalRecords(labs=(LabResult("709-8", 5, "%", day(230)),)), source="fhir")
    assert review.signals.count() == 2


def test_it_refuses_an_unknown_work_up_item(tcl_review, physician_a):
    with pytest.raises(SignalError, match="bone_marrow"):
        signal_review_order_workup(tcl_review, by=physician_a, items=["x_ray"])


def test_it_requires_a_reason_to_dismiss(tcl_review, physician_a):
    with pytest.raises(SignalError, match="reason"):
        signal_review_dismiss(tcl_review, by=physician_a, reason="  ")
    review = signal_review_dismiss(tcl_review, by=physician_a, reason="Known indolent lesion")
    assert (review.status, review.reason, review.decided_at is not None) == (
        SignalReviewStatus.DISMISSED,
        "Known indolent lesion",
        True,
    )


def test_the_database_refuses_a_second_unresolved_review_of_a_kind(tcl_review):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        SignalReview.objects.create(
            patient=tcl_review.patient,
            infusion=tcl_review.infusion,
            kind=tcl_review.kind,
            label="x",
            priority=1,
            opened_at=tcl_review.opened_at,
            first_observed_on=dt.date(2026, 1, 1),
            last_observed_on=dt.date(2026, 1, 1),
        )
