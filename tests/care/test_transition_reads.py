"""A transition reads again what its update wrote, not the visit's infusion, patient and centre its caller read
with it: the daily sweep marks a day's missed visits one transition each, and those reads were a sixth of it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from surveillance.care import lifecycle
from surveillance.models import FollowUpVisit, VisitStatus

pytestmark = pytest.mark.django_db


def test_it_keeps_the_infusion_patient_and_centre_the_caller_read(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), timezone.localdate() - dt.timedelta(days=30))
    read = FollowUpVisit.objects.select_related("infusion__patient__centre", "rule").get(pk=visit.pk)

    with CaptureQueriesContext(connection) as queries:
        lifecycle.visit_mark_missed(read, reason="no show")

    by_pk = [
        q["sql"]
        for q in queries.captured_queries
        for table in ("surveillance_infusion", "surveillance_treatmentcentre")
        if q["sql"].startswith("SELECT") and f'FROM "{table}" WHERE "{table}"."id" =' in q["sql"]
    ]
    assert by_pk == []
    assert read.status == VisitStatus.MISSED and read.status_changed_at is not None
    assert read.infusion.patient.centre == centre_a


def test_it_reads_again_every_field_the_update_wrote(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), timezone.localdate() + dt.timedelta(days=3))
    moved = visit.due_date + dt.timedelta(days=5)

    lifecycle.visit_reschedule(visit, new_date=moved, reason="clinic closed")

    stored = FollowUpVisit.objects.get(pk=visit.pk)
    assert visit.due_date == moved
    assert (visit.due_date, visit.sequence, visit.updated_at) == (stored.due_date, stored.sequence, stored.updated_at)
