"""A visit's results are stored as results: a blood count one row per analyte with its unit and range, every other
assessment with its outcome; a bad unit refuses the call and writes nothing; an EHR value never replaces what a
person recorded; "nothing abnormal for the rest" completes the visit in one step."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.care import planning
from surveillance.care.lifecycle import TransitionError
from surveillance.care.results import ResultEntry, ResultsRefused, results_record, visit_record
from surveillance.models import AuditEntry, FollowUpVisit, ResultSource, VisitResult, VisitStatus

pytestmark = pytest.mark.django_db
CBC_FAMILY = ("cbc_diff_smear", "cbc_diff", "cbc")


@pytest.fixture
def cbc_visit(centre_a, make_patient, make_infusion) -> FollowUpVisit:
    """The first scheduled visit asking for a blood count, of a patient infused 60 days ago."""
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date.today() - dt.timedelta(days=60))
    planning.infusion_plan(infusion)
    visits = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date")
    return next(v for v in visits if set(CBC_FAMILY) & set(v.assessments))


def cbc_code(visit: FollowUpVisit) -> str:
    return next(code for code in CBC_FAMILY if code in visit.assessments)


def test_it_stores_a_blood_count_one_row_per_analyte_with_unit_range_and_interpretation(cbc_visit, coordinator_a):
    cbc = cbc_code(cbc_visit)
    day = dt.date.today()
    report = results_record(
        cbc_visit,
        [
            ResultEntry(cbc, analyte="anc", value=0.9, unit="10*9/L", reference_low=1.8, reference_high=7.7),
            ResultEntry(cbc, loinc="718-7", value=131, unit="g/L", reference_low=120, reference_high=160),
            ResultEntry(cbc, loinc="777-3", value=210, unit="10*3/uL", effective_on=day),
        ],
        actor=coordinator_a,
    )
    rows = {row.analyte: row for row in VisitResult.objects.filter(visit=cbc_visit)}
    assert report.created == 3 and set(rows) == {"anc", "haemoglobin", "platelets"}
    assert (rows["anc"].outcome, rows["anc"].loinc, rows["anc"].unit) == ("abnormal", "751-8", "10*9/L")
    assert (rows["haemoglobin"].outcome, rows["haemoglobin"].reference_high) == ("normal", 160)
    assert (rows["platelets"].outcome, rows["platelets"].effective_on) == ("", day)  # no range: not interpreted
    assert {row.source for row in rows.values()} == {ResultSource.PERSON}
    assert AuditEntry.objects.filter(action="results_recorded", object_id=str(cbc_visit.pk)).count() == 1


def test_it_refuses_a_bad_unit_or_value_and_writes_nothing(cbc_visit):
    cbc = cbc_code(cbc_visit)
    with pytest.raises(ResultsRefused) as refused:
        results_record(
            cbc_visit,
            [
                ResultEntry(cbc, analyte="platelets", value=210, unit="10*9/L"),
                ResultEntry(cbc, analyte="haemoglobin", value=13, unit="mg/furlong"),
                ResultEntry(cbc, analyte="anc", unit="10*9/L"),
                ResultEntry("not_asked", "normal"),
                ResultEntry(cbc, "maybe"),
            ],
        )
    assert set(refused.value.problems) == {"1.unit", "2.value", "3.assessment", "4.outcome"}
    assert not VisitResult.objects.filter(visit=cbc_visit).exists()


def test_it_never_writes_an_ehr_value_over_a_persons_result(cbc_visit, coordinator_a):
    cbc = cbc_code(cbc_visit)
    results_record(cbc_visit, [ResultEntry(cbc, analyte="anc", value=2.4, unit="10*9/L")], actor=coordinator_a)
    later = dt.date.today()
    report = results_record(
        cbc_visit,
        [
            ResultEntry(cbc, loinc="751-8", value=0.4, unit="10*9/L", effective_on=later, source_id="Observation/a"),
            ResultEntry(cbc, loinc="787-2", value=91, unit="fL", effective_on=later, source_id="Observation/b"),
        ],
        source=ResultSource.EHR,
    )
    rows = {row.analyte: row for row in VisitResult.objects.filter(visit=cbc_visit)}
    assert (report.kept_person, report.created) == (1, 1)
    assert (rows["anc"].value, rows["anc"].source, rows["anc"].recorded_by) == (2.4, "person", coordinator_a)
    assert (rows["mcv"].source, rows["mcv"].source_id) == ("ehr", "Observation/b")


def test_it_records_the_rest_as_nothing_abnormal_and_completes_the_visit(cbc_visit, coordinator_a):
    first, *rest = cbc_visit.assessments
    visit, report = visit_record(
        cbc_visit,
        completed_on=dt.date.today(),
        results=[ResultEntry(first, "abnormal", note="Palpable node, left axilla")],
        rest_normal=True,
        actor=coordinator_a,
    )
    outcomes = dict(VisitResult.objects.filter(visit=visit).values_list("assessment", "outcome"))
    assert visit.status == VisitStatus.COMPLETED and visit.status_changed_by == coordinator_a
    assert outcomes == {first: "abnormal", **{code: "normal" for code in rest}} and report.created == len(outcomes)


def test_it_leaves_nothing_when_the_visit_was_settled_first(cbc_visit):
    FollowUpVisit.objects.filter(pk=cbc_visit.pk).update(status=VisitStatus.CANCELLED, status_reason="moved away")
    with pytest.raises(TransitionError):
        visit_record(cbc_visit, completed_on=dt.date.today(), rest_normal=True)
    assert not VisitResult.objects.filter(visit=cbc_visit).exists()
