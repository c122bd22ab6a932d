"""``signals_record``: evaluates, records each piece of evidence once, one unresolved review per kind, audited."""

from __future__ import annotations

import pytest
from django.core import mail

from surveillance.models import AuditEntry, Reminder, Signal, SignalReview, SignalReviewStatus, SignalRuleSet
from surveillance.signals.review import signals_record
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult
from tests.signals.conftest import INFUSED, day, monthly_normal_counts

pytestmark = pytest.mark.django_db


@pytest.fixture
def infusion(centre_a, make_patient, make_infusion):
    return make_infusion(make_patient(centre_a), infusion_date=INFUSED, indication="DLBCL (C83.3)")


def record(infusion, *labs, diagnoses=()):
    return signals_record(infusion, ClinicalRecords(tuple(labs), tuple(diagnoses)), source="fhir")


def test_it_records_nothing_for_normal_counts_and_old_cancers(infusion):
    report = record(infusion, *monthly_normal_counts(), diagnoses=[Diagnosis("icd10", "C50.911", day(-900))])
    assert (report.raised, report.reviews_opened) == (0, [])
    assert not SignalReview.objects.exists()


def test_it_opens_one_neutropenia_review_for_a_grade_2_result_at_month_9(infusion):
    report = record(infusion, *monthly_normal_counts(8), LabResult("751-8", 1.2, "10*3/uL", day(274), "Observation/m9"))
    review = SignalReview.objects.get()
    assert report.reviews_opened == [review.pk]
    assert (review.kind, review.status, review.patient_id, review.first_observed_on) == (
        "neutropenia",
        SignalReviewStatus.OPEN,
        infusion.patient_id,
        day(274),
    )
    signal = review.signals.get()
    assert (signal.grade, signal.evidence_key, signal.source) == (2, "Observation/m9", "fhir")
    assert signal.ruleset == SignalRuleSet.objects.order_by("version").last()  # raised by the newest rules
    audit = AuditEntry.objects.get(action="signal_opened")
    assert (audit.object_id, audit.patient_id, audit.actor_label) == (str(review.pk), infusion.patient_id, "system")


def test_it_adds_a_later_result_of_the_same_kind_to_the_open_review(infusion):
    record(infusion, LabResult("751-8", 1.2, "10*3/uL", day(274), "Observation/m9"))
    report = record(infusion, LabResult("751-8", 1.1, "10*3/uL", day(305), "Observation/m10"))
    review = SignalReview.objects.get()
    assert report.reviews_joined == [review.pk]
    assert list(review.signals.values_list("evidence_key", flat=True)) == ["Observation/m9", "Observation/m10"]
    assert (review.first_observed_on, review.last_observed_on) == (day(274), day(305))
    assert AuditEntry.objects.filter(action="signal_joined", object_id=str(review.pk)).count() == 1


def test_it_records_the_same_evidence_once_when_imported_again(infusion):
    result = LabResult("751-8", 1.2, "10*3/uL", day(274), "Observation/m9")
    record(infusion, result)
    report = record(infusion, result)
    assert (report.raised, report.duplicates) == (0, 1)
    assert Signal.objects.count() == 1


def test_it_puts_a_new_t_cell_lymphoma_at_the_top_of_the_worklist(infusion):
    record(
        infusion,
        LabResult("751-8", 1.2, "10*3/uL", day(274)),
        diagnoses=[Diagnosis("icd10", "C84.40", day(426), "Condition/tcl")],
    )
    first = SignalReview.objects.unresolved().order_by("priority", "opened_at").first()
    assert (first.kind, first.priority, first.suggested_type) == ("t_cell_lymphoma", 1, "t_cell_lymphoma")


def test_it_opens_a_possible_relapse_for_the_treated_lymphoma(infusion):
    record(infusion, diagnoses=[Diagnosis("icd10", "C83.38", day(200))])
    assert list(SignalReview.objects.values_list("kind", flat=True)) == ["possible_relapse"]


def test_it_notes_unconvertible_units_in_the_audit_without_raising(infusion):
    report = record(infusion, LabResult("718-7", 6.0, "mg/mL", day(120)))
    assert report.raised == 0 and len(report.unconverted) == 1
    audit = AuditEntry.objects.get(action="signal_skipped")
    assert audit.changes["unconverted"] == report.unconverted


def test_it_never_emails_the_patient(infusion):
    record(infusion, diagnoses=[Diagnosis("icd10", "C84.40", day(426))])
    assert mail.outbox == []
    assert not Reminder.objects.exists()


def test_it_opens_a_new_review_after_the_last_one_was_dismissed(infusion, physician_a):
    from surveillance.signals.review import signal_review_dismiss

    record(infusion, LabResult("751-8", 1.2, "10*3/uL", day(274)))
    signal_review_dismiss(SignalReview.objects.get(), by=physician_a, reason="Explained by a viral infection")
    record(infusion, LabResult("751-8", 0.9, "10*3/uL", day(400)))
    assert sorted(SignalReview.objects.values_list("status", flat=True)) == [
        SignalReviewStatus.DISMISSED,
        SignalReviewStatus.OPEN,
    ]


def test_it_raises_nothing_from_evidence_dated_after_a_recorded_death(infusion):
    from surveillance.models.patients import PatientStatus

    patient = infusion.patient
    patient.status, patient.status_date = PatientStatus.DECEASED, day(300)
    patient.save()
    report = record(
        infusion,
        LabResult("751-8", 1.2, "10*3/uL", day(274), "Observation/before"),
        LabResult("751-8", 0.9, "10*3/uL", day(320), "Observation/after"),
    )
    assert report.raised == 1
    assert sorted(line.split()[0] for line in report.after_death) == ["neutropenia", "worsening_cytopenia"]
    assert list(Signal.objects.values_list("evidence_key", flat=True)) == ["Observation/before"]
    assert AuditEntry.objects.get(action="signal_skipped").changes["after_death"] == report.after_death
