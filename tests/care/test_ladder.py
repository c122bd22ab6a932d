"""The lost-to-follow-up ladder moves in the transition that changes a patient's consecutive misses: a visit
recorded brings an off-track patient back at once, and the daily sweep reads no patient nothing happened to."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from surveillance.care import lifecycle
from surveillance.models import Patient, PatientStatus
from surveillance.models.patients import LadderStage
from surveillance.reminders import sweep

pytestmark = pytest.mark.django_db


def _missed_twice(patient, open_visit):
    today = timezone.localdate()
    visits = [open_visit(patient, today + dt.timedelta(days=n), occurrence=90 + n) for n in range(3)]
    for visit in visits[:2]:
        lifecycle.visit_mark_missed(visit, reason="no show")
    return visits


def test_it_moves_a_patient_up_when_a_coordinator_marks_visits_missed(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    _missed_twice(patient, open_visit)
    patient.refresh_from_db()
    assert patient.ladder_stage == LadderStage.TRACING  # no sweep ran


def test_it_brings_a_patient_back_when_a_visit_is_recorded(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    visits = _missed_twice(patient, open_visit)
    lifecycle.visit_mark_completed(visits[2], completed_on=timezone.localdate())
    patient.refresh_from_db()
    assert (patient.ladder_stage, patient.status) == (LadderStage.ON_TRACK, PatientStatus.ACTIVE)


def test_it_dates_a_lost_patient_on_the_centres_day(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    visits = _missed_twice(patient, open_visit)
    day = timezone.localdate(timezone.now(), centre_a.tz)
    evening = dt.datetime.combine(day, dt.time(21, 30), tzinfo=centre_a.tz).astimezone(dt.UTC)  # tomorrow in UTC
    lifecycle.visit_mark_missed(visits[2], reason="no show", now=evening)
    patient.refresh_from_db()
    assert (patient.status, patient.status_date) == (PatientStatus.LOST, day)


def test_it_sweeps_in_the_same_queries_however_many_patients_are_off_track(centre_a, make_patient, open_visit):
    def sweep_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            sweep.daily_sweep()
        return len(queries.captured_queries)

    _missed_twice(make_patient(centre_a, mrn="OFF-1"), open_visit)
    few = sweep_queries()
    for n in range(2, 8):
        _missed_twice(make_patient(centre_a, mrn=f"OFF-{n}"), open_visit)
    assert Patient.objects.exclude(ladder_stage=LadderStage.ON_TRACK).count() == 7
    assert sweep_queries() == few  # every miss was recorded by hand: the sweep has nothing to read
