"""The results of many visits written together (``results_write``, as an EHR import does) are the rows, history
and audit entries, and the counts, that writing each visit's on its own (``results_record``) leaves: a person's
result kept, an older EHR value replaced, the rest created."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.care import planning
from surveillance.care.results import ResultEntry, results_check, results_record, results_write
from surveillance.models import AuditEntry, FollowUpVisit, ResultSource, VisitChange, VisitResult, VisitStatus
from tests.care.test_visit_results import CBC_FAMILY, cbc_code

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


@pytest.fixture
def cbc_visits(centre_a, make_patient, make_infusion, coordinator_a):
    """Visits asking for a blood count: one with a person's neutrophils, one with an older EHR platelet count."""

    def make() -> list[FollowUpVisit]:
        infusion = make_infusion(make_patient(centre_a), infusion_date=TODAY - dt.timedelta(days=60))
        planning.infusion_plan(infusion)
        visits = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date")
        first, second = [v for v in visits if set(CBC_FAMILY) & set(v.assessments)][:2]
        entry = ResultEntry(cbc_code(first), analyte="anc", value=2.6, unit="10*9/L")
        results_record(first, [entry], actor=coordinator_a)
        older = ResultEntry(
            cbc_code(second), loinc="777-3", value=150, unit="10*3/uL", effective_on=TODAY, source_id="obs-0"
        )
        results_record(second, [older], source=ResultSource.EHR)
        return [first, second]

    return make


def _ehr_entries(visit: FollowUpVisit) -> list[ResultEntry]:
    cbc = cbc_code(visit)
    return [
        ResultEntry(cbc, loinc="751-8", value=0.9, unit="10*3/uL", effective_on=TODAY, source_id="obs-1"),
        ResultEntry(cbc, loinc="777-3", value=245, unit="10*3/uL", effective_on=TODAY, source_id="obs-2"),
        ResultEntry(cbc, loinc="718-7", value=13.4, unit="g/dL", reference_low=12, reference_high=17, source_id="o3"),
    ]


def _rows(visits: list[FollowUpVisit], reports) -> list:
    return [
        (
            (report.created, report.updated, report.unchanged, report.kept_person, len(report.result_ids)),
            sorted(
                VisitResult.objects.filter(visit=visit).values_list("analyte", "value", "unit", "outcome", "source")
            ),
            [(c.action, sorted(c.after.items())) for c in VisitChange.objects.filter(visit=visit).order_by("pk")],
            sorted(
                (
                    entry.action,
                    entry.changes.get("created"),
                    entry.changes.get("updated"),
                    len(entry.changes["results"]),
                )
                for entry in AuditEntry.objects.filter(object_type="followupvisit", object_id=str(visit.pk))
            ),
        )
        for visit, report in zip(visits, reports, strict=True)
    ]


def test_it_writes_many_visits_results_as_one_by_one(cbc_visits):
    alone, together = cbc_visits(), cbc_visits()

    one_by_one = [results_record(visit, _ehr_entries(visit), source=ResultSource.EHR) for visit in alone]
    checked = [(visit, results_check(visit, _ehr_entries(visit), ResultSource.EHR)) for visit in together]
    with CaptureQueriesContext(connection) as queries:
        written = results_write(checked, source=ResultSource.EHR)

    expected = _rows(alone, one_by_one)
    assert [row[0][:4] for row in expected] == [(2, 0, 0, 1), (2, 1, 0, 0)]  # the person's kept, the older replaced
    assert _rows(together, written) == expected
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(queries.captured_queries) - len(updates) <= 6  # one read, one insert each of results, history, audit
