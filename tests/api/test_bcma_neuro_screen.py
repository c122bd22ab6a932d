"""A BCMA product's schedule has the month-2 delayed neurotoxicity screen by default (clinical reference (b) 6)."""

from __future__ import annotations

import datetime as dt

from dateutil.relativedelta import relativedelta

from surveillance.models import FollowUpVisit


def _record(api, patient, product: str) -> int:
    day = dt.date.today() - dt.timedelta(days=10)
    response = api.post(
        "/api/v1/infusions",
        {"patient": patient.pk, "product": product, "infusion_date": day.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_it_plans_the_month_2_neurotoxicity_screen_for_a_bcma_product(api_a, centre_a, make_patient):
    infusion_id = _record(api_a, make_patient(centre_a), "carvykti")
    day = dt.date.today() - dt.timedelta(days=10)
    month_2 = [
        visit
        for visit in FollowUpVisit.objects.filter(infusion_id=infusion_id, status="scheduled")
        if visit.window_start <= day + relativedelta(months=2) <= visit.window_end
    ]
    assert any("neuro_screen" in str(visit.assessments) for visit in month_2), [v.rule_code for v in month_2]


def test_it_plans_no_such_screen_for_a_cd19_product(api_a, centre_a, make_patient):
    infusion_id = _record(api_a, make_patient(centre_a, birth_date=dt.date(1980, 1, 1)), "kymriah")
    assert not FollowUpVisit.objects.filter(infusion_id=infusion_id, rule_code="M2_NEURO").exists()
    assert not any("neuro_screen" in str(v.assessments) for v in FollowUpVisit.objects.filter(infusion_id=infusion_id))
