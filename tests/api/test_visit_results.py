"""Results through the API, nested on the visit: recorded with the completion or on their own, listed with their
labels; a bad unit or value is a 400 naming the entry and the field, and nothing is saved."""

from __future__ import annotations

import datetime as dt

from surveillance.models import FollowUpVisit, VisitResult, VisitStatus

CBC_FAMILY = ("cbc_diff_smear", "cbc_diff", "cbc")


def cbc_visit(infusion) -> tuple[FollowUpVisit, str]:
    visits = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date")
    visit = next(v for v in visits if set(CBC_FAMILY) & set(v.assessments))
    return visit, next(code for code in CBC_FAMILY if code in visit.assessments)


def test_it_answers_400_with_field_errors_for_a_bad_unit_and_saves_nothing(api_a, planned_a):
    visit, cbc = cbc_visit(planned_a[1])
    body = {
        "completed_on": dt.date.today().isoformat(),
        "assessment_results": [
            {"assessment": cbc, "loinc": "718-7", "value": 12.9, "unit": "g/dL"},
            {"assessment": cbc, "analyte": "platelets", "value": 180, "unit": "bananas"},
            {"assessment": cbc, "analyte": "anc", "value": "low", "unit": "10*9/L"},
        ],
    }
    response = api_a.post(f"/api/v1/visits/{visit.pk}/complete", body, format="json")
    assert response.status_code == 400 and response["Content-Type"].startswith("application/problem+json")
    assert set(response.json()["fields"]) == {"assessment_results.2.value"}  # the type first: a number
    body["assessment_results"].pop()
    response = api_a.post(f"/api/v1/visits/{visit.pk}/complete", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["assessment_results.1.unit"]
    assert "bananas" in response.json()["fields"]["assessment_results.1.unit"][0]
    visit.refresh_from_db()
    assert visit.status == VisitStatus.SCHEDULED and not VisitResult.objects.filter(visit=visit).exists()


def test_it_completes_with_results_and_lists_them_with_labels(api_a, planned_a):
    visit, cbc = cbc_visit(planned_a[1])
    body = {
        "completed_on": dt.date.today().isoformat(),
        "assessment_results": [
            {"assessment": cbc, "loinc": "777-3", "value": 62, "unit": "10*3/uL", "reference_low": 150},
        ],
        "rest_normal": True,
    }
    response = api_a.post(f"/api/v1/visits/{visit.pk}/complete", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "completed"
    rows = api_a.get(f"/api/v1/visits/{visit.pk}/results").json()
    platelets = next(row for row in rows if row["analyte"] == "platelets")
    assert (platelets["outcome"], platelets["analyte_label"], platelets["source"]) == (
        "abnormal",
        "Platelets",
        "integration",
    )
    assert {row["assessment"] for row in rows} == set(visit.assessments)
    assert all(row["assessment_label"] != row["assessment"] for row in rows)


def test_it_records_results_arriving_after_the_visit(api_a, planned_a, readonly_a):
    visit, cbc = cbc_visit(planned_a[1])
    entry = {"assessment": cbc, "analyte": "mcv", "value": 104, "unit": "fL", "reference_high": 100}
    body = {"assessment_results": [entry]}
    assert readonly_a.post(f"/api/v1/visits/{visit.pk}/results", body, format="json").status_code == 403
    response = api_a.post(f"/api/v1/visits/{visit.pk}/results", body, format="json")
    assert response.status_code == 200 and response.json()[0]["outcome"] == "abnormal"
    assert VisitResult.objects.get(visit=visit).value == 104
