"""A list filtered by a related object's id matches nothing for a number no row can have as its id: a fraction is
not rounded to another patient, and a number beyond a bigint is not an error, on either database."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

IMPOSSIBLE = ["{pk}.5", "-1.1458459182080621e+52", str(2**63), "1e30"]


@pytest.mark.parametrize(
    "path", ["/api/v1/infusions", "/api/v1/visits", "/api/v1/reminders", "/api/v1/malignancy-events"]
)
@pytest.mark.parametrize("value", IMPOSSIBLE)
def test_it_matches_nothing_for_an_id_no_row_can_have(api_a, planned_a, path, value):
    patient = planned_a[0]

    answer = api_a.get(path, {"patient": value.format(pk=patient.pk)})

    assert answer.status_code == 200, answer.content
    assert answer.json()["results"] == []


@pytest.mark.parametrize("path", ["/api/v1/infusions", "/api/v1/visits"])
def test_it_still_matches_the_patient_by_a_whole_id(api_a, planned_a, path):
    patient = planned_a[0]

    answer = api_a.get(path, {"patient": f"{patient.pk}.0"})

    assert answer.status_code == 200, answer.content
    assert answer.json()["results"]
    assert {row["patient"] for row in answer.json()["results"]} == {patient.pk}
