"""The reconciliation's rules, on plain facts: which encounter completes which visit, where an encounter counts as
the patient's centre, which appointment books a visit, and where a result lands."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.care.reconcile import (
    Appointment,
    Booking,
    Encounter,
    Site,
    VisitState,
    appointment_read,
    encounter_read,
    reconcile_decide,
)
from surveillance.signals.rules import LabResult

TODAY = dt.date(2026, 11, 30)
SYNTHEA_ORG = "https://github.com/synthetichealth/synthea|ca275b1b-c90e-3e95-84c9-3b4240fb9284"
CENTRE = Site(frozenset({SYNTHEA_ORG}), patient_source="https://ehr.example.org/fhir")


def day(offset: int) -> dt.date:
    return TODAY + dt.timedelta(days=offset)


def visit(pk: int, due: int, before: int = 10, after: int = 10, status: str = "scheduled", **more) -> VisitState:
    return VisitState(pk, status, day(due), day(due - before), day(due + after), ("cbc_diff", "history_exam"), **more)


def encounter(identity: str, on: int, sites=frozenset({SYNTHEA_ORG}), status="finished", source="") -> Encounter:
    return Encounter(identity, status, day(on), frozenset(sites), source)


def decide(visits, encounters=(), appointments=(), labs=(), site=CENTRE):
    return reconcile_decide(visits, encounters, appointments, labs, site=site, today=TODAY)


def test_it_completes_the_visit_whose_window_holds_a_finished_encounter_at_the_centre():
    plan = decide([visit(1, -5), visit(2, -60)], [encounter("in", -3), encounter("outside", -30)])
    assert plan.completions == [(1, "in", day(-3))]


@pytest.mark.parametrize(
    "changed",
    [
        {"status": "planned"},  # not finished
        {"sites": frozenset({"https://github.com/synthetichealth/synthea|another-clinic"})},  # elsewhere
        {"on": 2},  # after today
    ],
)
def test_it_changes_nothing_for_an_encounter_that_does_not_count(changed):
    values = {"identity": "e", "on": -3, **changed}
    assert decide([visit(1, 0)], [encounter(**values)]).completions == []


def test_it_accepts_a_siteless_encounter_from_the_patients_own_source_system_only():
    ours = encounter("ours", -3, sites=frozenset(), source=CENTRE.patient_source)
    theirs = encounter("theirs", -2, sites=frozenset(), source="https://other.example.org/fhir")
    assert decide([visit(1, 0)], [theirs]).completions == []
    assert decide([visit(1, 0)], [theirs, ours]).completions == [(1, "ours", day(-3))]
    unlisted = Site(frozenset(), CENTRE.patient_source)  # a centre that lists no site: its own system counts
    named = encounter("named", -3, source=CENTRE.patient_source)
    assert decide([visit(1, 0)], [named], site=unlisted).completions == [(1, "named", day(-3))]


def test_it_leaves_visits_a_person_settled_and_an_undone_encounter_alone():
    visits = [
        visit(1, 0, status="completed", settled_by_person=True),
        visit(2, 1, status="missed", settled_by_person=True),
        visit(3, 2, status="cancelled"),
        visit(4, 3, ehr_completion_undone="e"),
    ]
    assert decide(visits, [encounter("e", -1)]).completions == []
    assert decide(visits, [encounter("other", -1)]).completions == [(4, "other", day(-1))]


def test_it_completes_a_visit_the_sweep_marked_missed():
    plan = decide([visit(1, -20, status="missed")], [encounter("late-feed", -15)])
    assert plan.completions == [(1, "late-feed", day(-15))]


def test_it_gives_overlapping_windows_one_encounter_each_by_nearest_due_date():
    visits = [visit(1, -8), visit(2, -2)]
    plan = decide(visits, [encounter("a", -3), encounter("b", -1)])
    assert plan.completions == [(2, "a", day(-3)), (1, "b", day(-1))]


def test_it_books_a_scheduled_visit_for_a_booked_appointment_in_its_window_and_takes_a_cancelled_one_back():
    visits = [visit(1, 20), visit(2, 60, booked_for=day(58), booked_source="old")]
    plan = decide(
        visits,
        appointments=[
            Appointment("new", "booked", day(25)),
            Appointment("old", "cancelled", day(58)),
            Appointment("past", "booked", day(-1)),
            Appointment("proposed", "proposed", day(19)),
        ],
    )
    assert sorted(plan.bookings, key=str) == sorted([Booking(1, "new", day(25)), Booking(2, "old", None)], key=str)


def test_it_reads_an_appointments_hours_from_its_end_or_its_duration_and_none_from_a_day_alone():
    start = dt.datetime(2026, 12, 24, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    timed = {"id": "a", "status": "booked", "start": "2026-12-24T09:30:00-05:00", "end": "2026-12-24T10:15:00-05:00"}
    assert appointment_read(timed) == Appointment("a", "booked", start.date(), start, start + dt.timedelta(minutes=45))
    lasting = {"id": "b", "status": "booked", "start": "2026-12-24T14:30:00Z", "minutesDuration": 20}
    utc_start = dt.datetime(2026, 12, 24, 14, 30, tzinfo=dt.UTC)
    assert appointment_read(lasting).end - appointment_read(lasting).start == dt.timedelta(minutes=20)
    assert appointment_read(lasting).start == utc_start
    for start_value in ("2026-12-24", "2026-12-24T09:30:00"):  # a day alone; a time with no offset is no instant
        read = appointment_read({"id": "c", "status": "booked", "start": start_value, "end": "2026-12-24T10:00:00Z"})
        assert (read.on, read.start, read.end) == (dt.date(2026, 12, 24), None, None)
    backwards = {"id": "d", "status": "booked", "start": "2026-12-24T10:00:00Z", "end": "2026-12-24T09:00:00Z"}
    assert appointment_read(backwards).end is None


def test_it_books_again_when_the_same_appointment_moves_to_other_hours_of_the_same_day():
    start = dt.datetime.combine(day(25), dt.time(9, 30), tzinfo=dt.UTC)
    booked = visit(1, 20, booked_for=day(25), booked_source="appt", booked_start=start)
    same = Appointment("appt", "booked", day(25), start)
    later = Appointment("appt", "booked", day(25), start + dt.timedelta(hours=2))
    assert decide([booked], appointments=[same]).bookings == []
    assert decide([booked], appointments=[later]).bookings == [
        Booking(1, "appt", day(25), start + dt.timedelta(hours=2))
    ]


def test_it_files_the_latest_result_of_each_analyte_under_the_visits_blood_count():
    labs = [
        LabResult("751-8", 2.1, "10*3/uL", day(-6), "Observation/a", 1.8, 7.7),
        LabResult("753-4", 0.9, "10*3/uL", day(-2), "Observation/b", 1.8, 7.7, "abnormal"),
        LabResult("2345-7", 5.1, "mmol/L", day(-2), "Observation/glucose"),  # not a blood-count analyte
        LabResult("718-7", 13.0, "g/dL", day(-40), "Observation/old"),  # in no window
    ]
    plan = decide([visit(1, 0)], labs=labs)
    [entry] = plan.results[1]
    assert (entry.assessment, entry.analyte, entry.loinc, entry.value, entry.outcome) == (
        "cbc_diff",
        "anc",
        "753-4",
        0.9,
        "abnormal",
    )
    assert (entry.reference_low, entry.reference_high, entry.source_id) == (1.8, 7.7, "Observation/b")


def test_it_reads_synthea_service_providers_and_locations():
    resource = {
        "resourceType": "Encounter",
        "id": "01cadf9d",
        "status": "finished",
        "period": {"start": "2026-11-27T11:31:08-05:00"},
        "location": [
            {"location": {"reference": "Location?identifier=https://github.com/synthetichealth/synthea|loc-1"}}
        ],
        "serviceProvider": {"reference": f"Organization?identifier={SYNTHEA_ORG}"},
    }
    read = encounter_read(resource, "src")
    assert read.on == dt.date(2026, 11, 27) and read.status == "finished" and read.source == "src"
    assert {SYNTHEA_ORG, "ca275b1b-c90e-3e95-84c9-3b4240fb9284", "loc-1"} <= read.sites
