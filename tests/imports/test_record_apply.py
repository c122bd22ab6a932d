"""One record applied on its own, with no batch and no import around it: the plain functions every import calls
(``imports.apply``), on records parsed from the official HL7 examples."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from surveillance.care import infusions
from surveillance.imports.apply import ApplyContext, RowProblem, infusion_apply, patient_apply, record_apply
from surveillance.imports.fhir.parse import parse_bundle
from surveillance.imports.fhir.records import ParseResult
from surveillance.imports.identity import identity_reviews_open
from surveillance.models import AuditEntry, FollowUpVisit, IdentityReview, Infusion, Patient, Reminder
from tests.imports.conftest import HCPCS, collection, concept, official

pytestmark = pytest.mark.django_db

TODAY = dt.date.today()
CHALMERS_BORN = dt.date(1974, 12, 25)  # the official patient example: Peter Chalmers, MRN 12345, id "example"


def parsed(codes, *resources: dict) -> ParseResult:
    return parse_bundle(collection(*resources), codes, today=TODAY)


def car_t_procedure(days_ago: int) -> dict:
    procedure = official("procedure-example.json")  # about Patient/example
    procedure.update(code=concept(HCPCS, "Q2041"), performedDateTime=(TODAY - dt.timedelta(days=days_ago)).isoformat())
    return procedure


def test_it_creates_a_patient_from_one_record(centre_a, codes):
    (record,) = parsed(codes, official("patient-example.json")).patients
    ctx = ApplyContext.for_import(centre_a)

    patient = patient_apply(record, ctx)

    stored = Patient.objects.get()
    assert stored == patient
    assert (stored.mrn, stored.family_name, stored.birth_date) == ("12345", "Chalmers", CHALMERS_BORN)
    assert (stored.source_system, stored.source_id) == ("ehr", "example")
    assert (ctx.report.patients_created, ctx.report.patient_ids) == (1, {stored.pk})
    assert dict(ctx.known) == {("ehr", "example"): stored.pk}


def test_it_sends_an_identity_conflict_to_review_and_changes_no_one(centre_a, codes, make_patient):
    other = make_patient(centre_a, mrn="12345", family_name="Chalmers", birth_date=dt.date(1981, 3, 4))
    (record,) = parsed(codes, official("patient-example.json")).patients
    ctx = ApplyContext.for_import(centre_a)

    with pytest.raises(RowProblem) as refused:
        patient_apply(record, ctx)

    assert (refused.value.field_name, refused.value.code) == ("identifier", "conflict")
    assert "Chalmers" not in refused.value.message and "1974" not in refused.value.message  # no PHI echoed
    other.refresh_from_db()
    assert (Patient.objects.count(), other.birth_date, other.source_id) == (1, dt.date(1981, 3, 4), "")
    assert identity_reviews_open(centre_a, ctx.conflicts.values()) == 1
    review = IdentityReview.objects.get()
    assert (review.patient, review.source_id, review.status) == (other, "example", "open")
    assert review.reason == "its identifier matches a patient whose birth date differs"


def test_it_records_an_infusion_through_the_infusion_flow(centre_a, codes, make_patient, make_infusion, monkeypatch):
    patient = make_patient(centre_a, birth_date=CHALMERS_BORN, source_system="ehr", source_id="example")
    earlier = make_infusion(patient, infusion_date=TODAY - dt.timedelta(days=800))
    (record,) = parsed(codes, car_t_procedure(days_ago=40)).infusions
    recorded = []
    real_record = infusions.infusion_record

    def spied(infusion, **kwargs):
        recorded.append(infusion)
        return real_record(infusion, **kwargs)

    monkeypatch.setattr(infusions, "infusion_record", spied)
    ctx = ApplyContext.for_import(centre_a)

    infusion = infusion_apply(record, ctx)

    assert recorded == [infusion]
    stored = Infusion.objects.get(pk=infusion.pk)
    assert (stored.product.code, stored.source_id, stored.infusion_date) == (
        "yescarta",
        "example",
        record.infusion_date,
    )
    earlier.refresh_from_db()
    assert earlier.superseded_by == stored  # a re-infusion restarts the schedule, as infusion_record does
    assert ctx.report.infusions_created == 1
    assert ctx.report.visits_planned == stored.visits.count() > 20
    assert Reminder.objects.filter(visit__infusion=stored).exists()
    assert AuditEntry.objects.filter(action="plan", object_id=str(stored.pk)).exists()


def test_it_saves_nothing_of_an_infusion_refused_for_the_birth_date(centre_a, codes, make_patient):
    make_patient(centre_a, birth_date=TODAY - dt.timedelta(days=30), source_system="ehr", source_id="example")
    (record,) = parsed(codes, car_t_procedure(days_ago=40)).infusions
    ctx = ApplyContext.for_import(centre_a)

    with pytest.raises(RowProblem) as refused:
        infusion_apply(record, ctx)

    problem = refused.value
    assert (problem.field_name, problem.message, problem.code) == (
        "date",
        "is before the patient's birth date",
        "business-rule",
    )
    assert not Infusion.objects.exists() and not FollowUpVisit.objects.exists()
    assert not AuditEntry.objects.filter(action="plan").exists()
    assert not ctx.report.changed and ctx.report.infusions_created == 0


def test_it_saves_nothing_of_a_patient_record_refused_for_a_null_character(centre_a, codes):
    (record,) = parsed(codes, official("patient-example.json")).patients
    ctx = ApplyContext.for_import(centre_a)

    with pytest.raises(RowProblem) as refused:
        record_apply(dataclasses.replace(record, family_name="Chal\x00mers"), ctx)

    assert (refused.value.field_name, refused.value.code) == ("family_name", "value")
    assert not Patient.objects.exists() and not ctx.report.changed and not ctx.known
