"""A reminder stores the visit sequence it was planned for: written by every path that plans one, read by the
dispatcher's re-check, and filled from the key for rows older than the column."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.apps import apps

from surveillance.care import lifecycle, planning
from surveillance.models import FollowUpVisit, Reminder, ReminderStatus
from surveillance.reminders import dispatch
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
PLANNED_AT = dt.datetime(2026, 2, 1, 12, tzinfo=UTC)
migration = importlib.import_module("surveillance.migrations.0006_reminder_sequence")


def test_it_stores_the_sequence_in_bulk_and_one_by_one(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 10))
    planning.infusions_plan_new([infusion], now=PLANNED_AT)  # the bulk path of an import
    assert Reminder.objects.filter(visit__infusion=infusion, sequence=0).exists()
    infusion.infusion_date = dt.date(2026, 1, 17)
    infusion.save()
    planning.infusion_plan(infusion, now=PLANNED_AT)  # moves every visit: sequence 1, rows planned one by one
    pending = Reminder.objects.filter(visit__infusion=infusion, status=ReminderStatus.PENDING)
    assert pending.exists() and set(pending.values_list("sequence", flat=True)) == {1}
    for reminder in Reminder.objects.filter(visit__infusion=infusion):
        assert f":s{reminder.sequence}:" in reminder.idempotency_key


def test_it_skips_a_reminder_planned_for_an_earlier_sequence(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), PLANNED_AT.date())
    reminder = add_reminder(visit, PLANNED_AT)
    assert dispatch.reminder_skip_reason(reminder, PLANNED_AT) == ""
    lifecycle.visit_reschedule(visit, new_date=visit.due_date + dt.timedelta(days=1), now=PLANNED_AT)
    reminder = Reminder.objects.get(pk=reminder.pk)
    assert dispatch.reminder_skip_reason(reminder, PLANNED_AT) == "visit moved"


def test_it_fills_the_sequence_of_existing_rows_from_their_key(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), PLANNED_AT.date())
    FollowUpVisit.objects.filter(pk=visit.pk).update(sequence=3)
    visit.refresh_from_db()
    reminder = add_reminder(visit, PLANNED_AT)
    Reminder.objects.filter(pk=reminder.pk).update(sequence=0)  # as the column was added to an old row
    migration.sequences_fill(apps, None)
    assert Reminder.objects.get(pk=reminder.pk).sequence == 3
    assert migration.sequence_of("7:s2:1:s5:patient:upcoming:14") == 5  # whatever the rule code looks like
    assert migration.sequence_of("not-a-planned-key") == 0
