"""Results an integration posts with its API token are the integration's, not a person's: recorded with source
``integration`` and the token's name as the audit trail writes it. They never replace what a person recorded, and
as machine data they give way to a later EHR Observation of the same analyte (but not to an older one)."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.care.results import ResultEntry, results_record
from surveillance.models import AuditEntry, ResultSource, VisitResult
from tests.api.test_visit_results import cbc_visit

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()


def post_mcv(client, visit, cbc: str, value: float, effective_on: dt.date):
    entry = {
        "assessment": cbc,
        "analyte": "mcv",
        "value": value,
        "unit": "fL",
        "effective_on": effective_on.isoformat(),
    }
    response = client.post(f"/api/v1/visits/{visit.pk}/results", {"assessment_results": [entry]}, format="json")
    assert response.status_code == 200, response.content
    return next(row for row in response.json() if row["analyte"] == "mcv")


def ehr_mcv(visit, cbc: str, value: float, effective_on: dt.date) -> None:
    entry = ResultEntry(cbc, analyte="mcv", value=value, unit="fL", effective_on=effective_on, source_id="obs-mcv")
    results_record(visit, [entry], source=ResultSource.EHR)


def test_it_records_a_tokens_result_as_the_integrations_with_the_tokens_name(api_a, planned_a):
    visit, cbc = cbc_visit(planned_a[1])
    row = post_mcv(api_a, visit, cbc, 91, TODAY)
    assert (row["source"], row["recorded_by_label"]) == ("integration", "token:epic-a")
    stored = VisitResult.objects.get(visit=visit, analyte="mcv")
    assert (stored.source, stored.recorded_by_id, stored.recorded_by_label) == ("integration", None, "token:epic-a")
    entry = AuditEntry.objects.get(action="results_recorded", object_id=str(visit.pk))
    assert (entry.actor_id, entry.actor_label) == (None, "token:epic-a")
    assert (entry.changes["source"], entry.changes["recorded_by"]) == ("integration", "token:epic-a")


def test_it_never_lets_a_token_replace_a_persons_result(api_a, planned_a, coordinator_a):
    visit, cbc = cbc_visit(planned_a[1])
    entry = ResultEntry(cbc, analyte="mcv", value=104, unit="fL", reference_high=100, effective_on=TODAY)
    results_record(visit, [entry], actor=coordinator_a)
    row = post_mcv(api_a, visit, cbc, 91, TODAY)
    assert (row["value"], row["source"], row["recorded_by_label"]) == (104, "person", "")
    assert VisitResult.objects.get(visit=visit, analyte="mcv").recorded_by == coordinator_a


def test_it_lets_a_later_ehr_observation_update_a_tokens_result_but_not_an_older_one(api_a, planned_a):
    visit, cbc = cbc_visit(planned_a[1])
    post_mcv(api_a, visit, cbc, 91, TODAY - dt.timedelta(days=2))
    ehr_mcv(visit, cbc, 88, TODAY - dt.timedelta(days=5))  # older than the integration's: it stands
    stored = VisitResult.objects.get(visit=visit, analyte="mcv")
    assert (stored.value, stored.source) == (91, ResultSource.INTEGRATION)
    ehr_mcv(visit, cbc, 103, TODAY)
    stored.refresh_from_db()
    assert (stored.value, stored.source, stored.source_id, stored.recorded_by_label) == (103, "ehr", "obs-mcv", "")
    row = post_mcv(api_a, visit, cbc, 99, TODAY)  # and the integration's own later word updates the EHR's
    assert (row["value"], row["source"]) == (99, "integration")


def test_it_refuses_an_integration_result_that_does_not_name_the_integration(planned_a):
    visit, cbc = cbc_visit(planned_a[1])
    entry = ResultEntry(cbc, analyte="mcv", value=91, unit="fL")
    with pytest.raises(ValueError, match="source_label"):
        results_record(visit, [entry], source=ResultSource.INTEGRATION)
    assert not VisitResult.objects.filter(visit=visit).exists()
