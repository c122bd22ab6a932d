"""An EHR export reconciles the visits on its own: a finished encounter at the centre inside a visit's window
records it done, one outside every window (or at another clinic) changes nothing; the blood counts dated in the
window become the visit's results with their units and ranges, never over what a person recorded; a booked
appointment makes the patient's reminder say "see you on" that day; a coordinator can undo an EHR completion.

The export is Synthea-shaped: real Encounters of the shared bulk export (their real service providers, dated
decades back) around the patient's own, and hundreds of weekly blood counts."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from surveillance.care import lifecycle
from surveillance.care.results import ResultEntry, results_record
from surveillance.imports import ehr_import
from surveillance.models import AuditEntry, FollowUpVisit, Reminder, VisitChange, VisitResult, VisitStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import messages
from tests.imports.conftest import car_t_procedure, collection, concept
from tests.imports.synthea import _lines

pytestmark = pytest.mark.django_db
LOINC = "http://loinc.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
SERVER = "https://ehr.example.org/fhir"
TODAY = dt.date.today()
INFUSED = TODAY - dt.timedelta(days=100)  # month 3 (day 85-115) is open, month 6 (day 150-210) ahead
SYNTHEA_ORG = "https://github.com/synthetichealth/synthea|ca275b1b-c90e-3e95-84c9-3b4240fb9284"

PATIENT = {
    "resourceType": "Patient",
    "id": "syn-7",
    "identifier": [{"system": "urn:mrn", "value": "SYN-7"}],
    "name": [{"family": "Okafor", "given": ["Ada"]}],
    "birthDate": "1961-02-03",
    "telecom": [{"system": "email", "value": "ada@example.org"}],
}
INFUSION = car_t_procedure("car-t", "syn-7", INFUSED)


def on_day(day: int) -> str:
    return (INFUSED + dt.timedelta(days=day)).isoformat()


def count(code: str, value: float, unit: str, day: int, low: float, high: float, flag: str = "") -> dict:
    observation = {
        "resourceType": "Observation",
        "id": f"obs-{code}-{day}",
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": concept(LOINC, code),
        "subject": {"reference": "Patient/syn-7"},
        "effectiveDateTime": f"{on_day(day)}T08:10:00-05:00",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "referenceRange": [
            {"low": {"value": low, "unit": unit, "code": unit}, "high": {"value": high, "unit": unit, "code": unit}}
        ],
    }
    if flag:
        observation["interpretation"] = [concept(INTERPRETATION, flag)]
    return observation


def weekly_counts(first: int, last: int) -> list[dict]:
    """Five analytes a week, normal, as a Synthea record carries them."""
    out = []
    for day in range(first, last, 7):
        out += [
            count("6690-2", 6.1, "10*3/uL", day, 4.0, 11.0),
            count("751-8", 3.2, "10*3/uL", day, 1.8, 7.7),
            count("718-7", 13.1, "g/dL", day, 12.0, 16.0),
            count("777-3", 232, "10*3/uL", day, 150, 400),
            count("787-2", 90, "fL", day, 80, 100),
        ]
    return out


def synthea_encounter(index: int, day: int | None, *, elsewhere: bool = False) -> dict:
    """A real exported Encounter, now the patient's; re-dated to ``day`` (None: its own date, decades back)."""
    encounter = json.loads(_lines("Encounter.000.ndjson")[index])
    encounter["subject"] = {"reference": "Patient/syn-7"}
    if day is not None:
        encounter = copy.deepcopy(encounter)
        encounter["id"] = f"enc-{day}{'-elsewhere' if elsewhere else ''}"
        encounter["period"] = {"start": f"{on_day(day)}T09:00:00-05:00", "end": f"{on_day(day)}T09:40:00-05:00"}
        org = "another-clinic" if elsewhere else SYNTHEA_ORG.rsplit("|", 1)[1]
        encounter["serviceProvider"] = {
            "reference": f"Organization?identifier=https://github.com/synthetichealth/synthea|{org}"
        }
        encounter.pop("location", None)
    return encounter


def export(*extra: dict) -> dict:
    """The patient, the infusion, ~300 blood counts, 150 real old encounters and ``extra``, from one server."""
    old = [synthea_encounter(i, None) for i in range(150)]
    resources = [PATIENT, INFUSION, *weekly_counts(-200, 100), *old, *extra]
    urls = [f"{SERVER}/{r['resourceType']}/{r['id']}" for r in resources]
    return collection(*resources, full_urls=urls)


@pytest.fixture
def centre(centre_a):
    centre_a.ehr_site_identifiers = f"{SYNTHEA_ORG}\n"
    centre_a.save()
    return centre_a


def visit(rule_code: str) -> FollowUpVisit:
    return FollowUpVisit.objects.get(infusion__patient__mrn="SYN-7", rule_code=rule_code)


def test_it_completes_the_visit_whose_window_holds_the_encounter_and_no_other(centre):
    report = ehr_import.bundle_import(
        export(synthea_encounter(3, 95), synthea_encounter(4, 60), synthea_encounter(5, 30, elsewhere=True)), centre
    )
    m3 = visit("M3")
    assert (m3.status, m3.completed_on, m3.completed_source) == ("completed", INFUSED + dt.timedelta(95), "enc-95")
    assert visit("D28").status == VisitStatus.UNRECORDED  # the day-30 encounter was at another clinic
    assert report.visits_completed == 1 and report.as_dict()["visits_reconciled"]["completed"] == 1
    completed = FollowUpVisit.objects.filter(infusion__patient__mrn="SYN-7", status="completed")
    assert list(completed.values_list("rule_code", flat=True)) == ["M3"]  # day 60 and the old ones: no window
    assert VisitChange.objects.get(visit=m3, action="completed").reason == "EHR encounter enc-95"
    assert AuditEntry.objects.filter(action="completed", object_id=str(m3.pk)).exists()
    again = ehr_import.bundle_import(export(synthea_encounter(3, 95)), centre)
    assert again.visits_completed == 0 and again.visit_results_recorded == 0


def test_it_reconciles_from_a_bulk_ndjson_export_too(centre):
    bundle = export(synthea_encounter(3, 95), count("777-3", 61, "10*3/uL", 97, 150, 400, flag="L"))
    lines = [json.dumps(entry["resource"]) for entry in bundle["entry"]]
    report = ehr_import.ndjson_import(lines, centre, batch_lines=100)
    assert not report.errors and report.visits_completed == 1
    m3 = visit("M3")
    platelets = VisitResult.objects.get(visit=m3, analyte="platelets")
    assert (m3.completed_source, platelets.value, platelets.outcome) == ("enc-95", 61, "abnormal")


def test_it_fills_the_visits_blood_count_with_units_ranges_and_interpretation(centre):
    low_anc = count("751-8", 0.9, "10*3/uL", 96, 1.8, 7.7, flag="L")
    ehr_import.bundle_import(export(low_anc), centre)
    m3 = visit("M3")
    rows = {row.analyte: row for row in VisitResult.objects.filter(visit=m3)}
    assert set(rows) == {"wbc", "anc", "haemoglobin", "platelets", "mcv"}
    anc = rows["anc"]
    assert anc.assessment in m3.assessments and anc.assessment.startswith("cbc")
    assert (anc.value, anc.unit, anc.reference_low, anc.reference_high) == (0.9, "10*3/uL", 1.8, 7.7)
    assert (anc.outcome, anc.source, anc.source_id, anc.loinc) == (
        "abnormal",
        "ehr",
        "Observation/obs-751-8-96",
        "751-8",
    )
    assert (rows["haemoglobin"].unit, rows["haemoglobin"].outcome) == ("g/dL", "normal")
    assert m3.status == VisitStatus.SCHEDULED  # results alone do not say the visit took place


def test_it_never_writes_the_ehrs_value_over_a_persons_result(centre, coordinator_a):
    ehr_import.bundle_import(export(), centre)
    m3 = visit("M3")
    cbc = VisitResult.objects.get(visit=m3, analyte="anc").assessment
    results_record(m3, [ResultEntry(cbc, analyte="anc", value=2.6, unit="10*9/L", note="repeat")], actor=coordinator_a)
    report = ehr_import.bundle_import(export(count("751-8", 0.7, "10*3/uL", 99, 1.8, 7.7, flag="L")), centre)
    anc = VisitResult.objects.get(visit=m3, analyte="anc")
    assert (anc.value, anc.unit, anc.source, anc.recorded_by) == (2.6, "10*9/L", "person", coordinator_a)
    assert report.visit_results_recorded == 0


def appointment_on(booked_day: dt.date) -> dict:
    return {
        "resourceType": "Appointment",
        "id": f"appt-{(booked_day - INFUSED).days}",
        "status": "booked",
        "start": f"{booked_day.isoformat()}T09:30:00-05:00",
        "end": f"{booked_day.isoformat()}T10:00:00-05:00",
        "participant": [
            {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"},
            {"actor": {"reference": "Patient/syn-7"}, "status": "accepted"},
        ],
    }


def test_it_books_the_visit_and_the_patient_email_says_see_you_on(centre):
    booked_day = INFUSED + dt.timedelta(days=160)
    appointment = appointment_on(booked_day)
    report = ehr_import.bundle_import(export(appointment), centre)
    m6 = visit("M6")
    assert (m6.booked_for, m6.booked_source, report.visits_booked) == (booked_day, "appt-160", 1)
    reminder = Reminder.objects.filter(visit=m6, audience=Audience.PATIENT, purpose=Purpose.UPCOMING).first()
    body = messages.reminder_message(reminder, now=timezone.now()).body
    assert "see you on" in body and str(booked_day.year) in body and "To book it" not in body
    cancelled = {**appointment, "status": "cancelled"}
    ehr_import.bundle_import(export(cancelled), centre)
    m6.refresh_from_db()
    assert (m6.booked_for, m6.booked_source) == (None, "")
    reminder = Reminder.objects.get(pk=reminder.pk)
    assert "To book it" in messages.reminder_message(reminder, now=timezone.now()).body


def test_it_takes_a_booking_back_when_the_cancellation_gives_no_date(centre):
    appointment = appointment_on(INFUSED + dt.timedelta(days=160))  # month 6: after every other record sent
    ehr_import.bundle_import(export(appointment), centre)
    assert visit("M6").booked_source == "appt-160"
    cancelled = {**appointment, "status": "cancelled"}
    del cancelled["start"], cancelled["end"]
    report = ehr_import.bundle_import(export(cancelled), centre)
    m6 = visit("M6")
    assert (m6.booked_for, m6.booked_source, report.visits_booked) == (None, "", 0)


def test_it_lets_a_coordinator_undo_an_ehr_completion(centre, client, coordinator_a):
    ehr_import.bundle_import(export(synthea_encounter(3, 95)), centre)
    m3 = visit("M3")
    changelist = reverse("admin:surveillance_followupvisit_changelist")
    client.force_login(coordinator_a)
    data = {"action": "undo_ehr_completion", "_selected_action": [m3.pk]}
    assert client.post(changelist, data).status_code == 200  # asks for the reason
    response = client.post(changelist, {**data, "apply": "1", "reason": "Dermatology visit, not the month-3 one"})
    assert response.status_code == 302
    m3.refresh_from_db()
    assert (m3.status, m3.completed_on, m3.completed_source, m3.ehr_completion_undone) == (
        "scheduled",
        None,
        "",
        "enc-95",
    )
    assert AuditEntry.objects.filter(action="ehr_completion_undone", object_id=str(m3.pk)).exists()
    ehr_import.bundle_import(export(synthea_encounter(3, 95)), centre)  # the same encounter again
    m3.refresh_from_db()
    assert m3.status == VisitStatus.SCHEDULED


def test_it_records_done_a_visit_the_sweep_marked_missed_but_not_one_a_person_did(centre, coordinator_a):
    ehr_import.bundle_import(export(), centre)
    m3, d28 = visit("M3"), visit("D28")
    lifecycle.visit_mark_missed(m3, reason="window closed")  # the daily sweep: no person
    FollowUpVisit.objects.filter(pk=d28.pk).update(status="scheduled")
    lifecycle.visit_mark_missed(visit("D28"), reason="patient said no", by=coordinator_a)
    report = ehr_import.bundle_import(export(synthea_encounter(3, 95), synthea_encounter(4, 30)), centre)
    assert report.visits_completed == 1
    assert (visit("M3").status, visit("M3").completed_source) == ("completed", "enc-95")
    assert visit("D28").status == VisitStatus.MISSED
