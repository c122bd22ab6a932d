"""List endpoints run a constant number of queries whatever the page size."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.care import planning, reporting
from surveillance.models import Patient

LISTS = [
    "/api/v1/patients",
    "/api/v1/infusions",
    "/api/v1/visits",
    "/api/v1/reminders",
    "/api/v1/malignancy-events",
    "/api/v1/protocols",
    "/api/v1/centres",
    "/api/v1/webhooks",
]


@pytest.fixture
def cohort(centre_a, make_patient, make_infusion):
    for n in range(6):
        patient = make_patient(centre_a)
        infusion = make_infusion(patient, infusion_date=dt.date.today() - dt.timedelta(days=30 + n))
        planning.infusion_plan(infusion)
        reporting.malignancy_event_record(infusion, diagnosis_date=dt.date.today(), malignancy_type="solid")
    assert Patient.objects.count() == 6


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.content)
    return len(captured)


@pytest.mark.parametrize("url", LISTS)
def test_it_runs_the_same_queries_for_5_and_100_rows(api_a, cohort, url):
    api_a.get(url)  # the first call of a token also stamps its last use
    small = queries(api_a, f"{url}?page_size=5")
    large = queries(api_a, f"{url}?page_size=100")
    assert large == small, f"{url}: {small} queries for 5 rows, {large} for 100"
    assert large <= 12
