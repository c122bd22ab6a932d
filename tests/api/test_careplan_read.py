"""A patient's CarePlan is read in one query: the patient and the visits of all its infusions, in date order; a
patient without visits has a CarePlan without activities, and one the caller may not see is not found."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.care import planning
from surveillance.models import FollowUpVisit


def test_it_reads_the_patient_and_its_visits_in_one_query(api_a, planned_a):
    patient, _infusion = planned_a
    url = f"/api/v1/patients/{patient.pk}/careplan"
    api_a.get(url)
    with CaptureQueriesContext(connection) as captured:
        assert api_a.get(url).status_code == 200
    reads = [
        q["sql"] for q in captured if '"surveillance_followupvisit"' in q["sql"] or "surveillance_patient" in q["sql"]
    ]
    assert len(reads) == 1


def test_it_shows_the_visits_of_every_infusion_in_date_order(api_a, planned_a, make_infusion):
    patient, _infusion = planned_a
    planning.infusion_plan(make_infusion(patient, infusion_date=dt.date.today() - dt.timedelta(days=10)))
    visits = FollowUpVisit.objects.filter(infusion__patient=patient).order_by("due_date", "rule_code", "occurrence")
    careplan = api_a.get(f"/api/v1/patients/{patient.pk}/careplan").json()["entry"][0]["resource"]
    shown = [
        a["reference"]["reference"] if "reference" in a else a["detail"]["description"] for a in careplan["activity"]
    ]
    expected = [
        f"Appointment/visit-{v.pk}"
        if v.status == "scheduled"
        else f"due {v.due_date}" + (f", done {v.completed_on}" if v.completed_on else "")
        for v in visits
    ]
    assert shown == expected and len({v.infusion_id for v in visits}) == 2


def test_it_answers_for_a_patient_without_visits(api_a, centre_a, make_patient):
    patient = make_patient(centre_a)
    bundle = api_a.get(f"/api/v1/patients/{patient.pk}/careplan").json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["CarePlan"]
    assert bundle["entry"][0]["resource"]["activity"] == []


def test_it_does_not_find_another_centres_patient_nor_an_id_that_is_none(api_b, planned_a):
    for pk in (planned_a[0].pk, "abc", 10**12):
        response = api_b.get(f"/api/v1/patients/{pk}/careplan")
        assert response.status_code == 404 and response.json()["detail"] == "Not found."


def test_it_shows_staff_their_centres_patients_and_an_administrator_every_one(
    staff_client, physician_b, auditor, administrator, planned_a
):
    url = f"/api/v1/patients/{planned_a[0].pk}/careplan"
    assert staff_client(physician_b).get(url).status_code == 404
    assert staff_client(auditor).get(url).status_code == 200
    assert staff_client(administrator).get(url).status_code == 200
