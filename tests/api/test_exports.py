"""Exports: the schedule as a FHIR CarePlan, as CSV, as iCalendar feeds (stable UIDs), and the bulk NDJSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import icalendar
import pytest
from fhir.resources.R4B.bundle import Bundle

from surveillance.care import lifecycle
from surveillance.exports.fhir_export import CSV_COLUMNS
from surveillance.models import FollowUpVisit, Patient, PatientStatus


def test_it_exports_the_schedule_as_a_valid_careplan_bundle(api_a, planned_a):
    patient, infusion = planned_a
    response = api_a.get(f"/api/v1/patients/{patient.pk}/careplan")
    assert response.status_code == 200 and response["Content-Type"] == "application/fhir+json"
    bundle = response.json()
    Bundle.model_validate(bundle)
    careplan = bundle["entry"][0]["resource"]
    assert careplan["resourceType"] == "CarePlan" and careplan["subject"] == {"reference": "Patient/pat-1"}
    assert len(careplan["activity"]) == infusion.visits.count()
    open_visits = infusion.visits.filter(status="scheduled").count()
    assert [e["resource"]["resourceType"] for e in bundle["entry"][1:]] == ["Appointment"] * open_visits
    assert patient.family_name not in response.content.decode()


@pytest.mark.parametrize("patient_status", PatientStatus.values)
def test_it_exports_a_valid_careplan_whatever_the_visits_and_patient_status(api_a, planned_a, patient_status):
    patient, infusion = planned_a
    Patient.objects.filter(pk=patient.pk).update(status=patient_status, status_date=dt.date.today(), source_id="")
    open_visits = FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").order_by("due_date")
    done, missed, cancelled = open_visits[:3]
    lifecycle.visit_mark_completed(done, completed_on=dt.date.today(), results={})
    lifecycle.visit_mark_missed(missed, reason="No show")
    lifecycle.visit_cancel(cancelled, reason="Moved abroad")
    bundle = api_a.get(f"/api/v1/patients/{patient.pk}/careplan").json()
    Bundle.model_validate(bundle)
    careplan = bundle["entry"][0]["resource"]
    statuses = [a["detail"]["status"] for a in careplan["activity"] if "detail" in a]
    # "unknown": the visits whose window had closed before the infusion was entered, their outcome not yet recorded
    assert set(statuses) == {"cancelled", "completed", "stopped", "unknown"}
    assert careplan["subject"] == {"identifier": {"system": "urn:cartwatch:patient", "value": str(patient.pk)}}


def test_it_exports_the_schedule_as_csv(api_a, planned_a):
    patient, infusion = planned_a
    response = api_a.get(f"/api/v1/patients/{patient.pk}/schedule.csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == infusion.visits.count()


def test_it_keeps_calendar_uids_stable_when_a_visit_moves(api_a, planned_a):
    patient, infusion = planned_a
    visit = FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").order_by("due_date").first()

    def events():
        body = api_a.get(f"/api/v1/patients/{patient.pk}/calendar.ics").content
        return {str(e["UID"]): e for e in icalendar.Calendar.from_ical(body).walk("VEVENT")}

    before = events()
    new_day = visit.window_end if visit.window_end != visit.due_date else visit.window_start
    lifecycle.visit_reschedule(visit, new_date=new_day)
    after = events()
    assert set(before) == set(after)
    moved = after[visit.ics_uid()]
    assert (moved.decoded("DTSTART"), int(moved["SEQUENCE"])) == (new_day, 1)


def test_it_feeds_a_centres_calendar_without_patient_names(api_a, planned_a, centre_a):
    patient, _ = planned_a
    response = api_a.get(f"/api/v1/centres/{centre_a.pk}/calendar.ics")
    assert response["Content-Type"].startswith("text/calendar")
    body = response.content.decode()
    assert "BEGIN:VEVENT" in body and patient.family_name not in body and patient.mrn not in body


def test_it_bulk_exports_visits_in_a_date_range_as_ndjson(api_a, planned_a):
    _, infusion = planned_a
    first = infusion.visits.order_by("due_date").first()
    response = api_a.get(f"/api/v1/export/visits.ndjson?due_after={first.due_date}&due_before={first.due_date}")
    assert response["Content-Type"] == "application/x-ndjson"
    *rows, marker = [json.loads(line) for line in response.content.decode().splitlines()]
    assert marker == {"resourceType": "ExportPage", "complete": True, "count": len(rows)}
    assert rows and all(row["due_date"] == str(first.due_date) for row in rows)
    assert tuple(rows[0]) == CSV_COLUMNS


def test_it_refuses_a_bad_export_range(api_a, planned_a):
    response = api_a.get("/api/v1/export/visits.ndjson?due_after=2030-01-01&due_before=2020-01-01")
    assert response.status_code == 400 and response.json()["fields"] == {"due_before": ["must not be before due_after"]}
