"""Reminders are rendered ahead of their moment; the dispatcher sends those bytes while they still match, and
renders afresh when what the message is made of has changed."""

from __future__ import annotations

import datetime as dt

import pytest

from surveillance.models import Delivery, Patient, PreparedMessage, Reminder, ReminderStatus
from surveillance.models.reminders import DeliveryOutcome
from surveillance.reminders import dispatch, prepare
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def _dtstamp(message) -> str:
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    return next(line for line in calendar.get_content().splitlines() if line.startswith("DTSTAMP"))


def test_it_sends_the_message_rendered_ahead(smtp_settings, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    reminder = add_reminder(visit, NOW)
    rendered_at = NOW - dt.timedelta(minutes=90)

    assert prepare.reminders_prepare(rendered_at).prepared == 1
    dispatch.dispatch_run(NOW)

    [message] = smtp_settings.messages
    assert _dtstamp(message) == "DTSTAMP:20261102T123000Z"  # stamped when rendered, not when sent
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.SENT and reminder.message_id == message["Message-ID"]


def test_it_renders_afresh_what_changed_after_it_was_rendered(smtp_settings, centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    add_reminder(open_visit(patient, NOW.date()), NOW)
    prepare.reminders_prepare(NOW - dt.timedelta(minutes=90))
    Patient.objects.filter(pk=patient.pk).update(email="new.address@example.org", preferred_language="es")

    dispatch.dispatch_run(NOW)

    [message] = smtp_settings.messages
    assert message["To"] == "new.address@example.org"
    assert message["Content-Language"] == "es"
    assert _dtstamp(message) == "DTSTAMP:20261102T140000Z"


def test_it_renders_only_pending_reminders_due_within_the_horizon(settings, centre_a, make_patient, open_visit):
    settings.CARTWATCH = {**settings.CARTWATCH, "REMINDER_PREPARE_MINUTES": 60}
    visit = open_visit(make_patient(centre_a), NOW.date())
    soon = add_reminder(visit, NOW + dt.timedelta(minutes=30), days_before=3)
    later = add_reminder(visit, NOW + dt.timedelta(hours=3), days_before=4)
    cancelled = add_reminder(visit, NOW + dt.timedelta(minutes=10), days_before=5)
    Reminder.objects.filter(pk=cancelled.pk).update(status=ReminderStatus.CANCELLED)

    first = prepare.reminders_prepare(NOW)
    second = prepare.reminders_prepare(NOW + dt.timedelta(minutes=1))

    assert (first.prepared, first.current) == (1, 0)
    assert (second.prepared, second.current) == (0, 1)  # nothing changed: not rendered again
    assert list(PreparedMessage.objects.values_list("reminder_id", flat=True)) == [soon.pk]
    assert not PreparedMessage.objects.filter(reminder__in=[later, cancelled]).exists()


def test_it_forgets_a_rendering_once_its_reminder_is_dealt_with(smtp_settings, centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    add_reminder(visit, NOW, days_before=3)
    cancelled = add_reminder(visit, NOW, days_before=4)
    prepare.reminders_prepare(NOW - dt.timedelta(minutes=5))
    assert PreparedMessage.objects.count() == 2
    Reminder.objects.filter(pk=cancelled.pk).update(status=ReminderStatus.CANCELLED)
    dispatch.dispatch_run(NOW)

    assert prepare.reminders_prepare(NOW).forgotten == 2
    assert not PreparedMessage.objects.exists()


def test_it_records_every_outcome_with_markers_a_group_at_a_time(
    settings, smtp_settings, centre_a, make_patient, open_visit
):
    settings.CARTWATCH = {**settings.CARTWATCH, "REMINDER_COMMIT_EVERY": 2}
    visit = open_visit(make_patient(centre_a), NOW.date())
    reminders = [add_reminder(visit, NOW, days_before=d) for d in range(3, 8)]
    smtp_settings.answers.extend(["250 OK"] * 2 + ["451 4.3.0 try later"])  # the third, in the second group

    result = dispatch.dispatch_run(NOW)

    assert (result.sent, result.retried) == (4, 1)
    outcomes = dict(Delivery.objects.values_list("reminder_id", "outcome"))
    assert outcomes == {
        r.pk: (DeliveryOutcome.RETRY if i == 2 else DeliveryOutcome.SENT) for i, r in enumerate(reminders)
    }
    assert not Delivery.objects.filter(outcome=DeliveryOutcome.SENDING).exists()
    assert Reminder.objects.filter(status=ReminderStatus.SENT).count() == 4


def test_it_asks_idle_workers_to_join_when_more_than_a_batch_is_due(settings, centre_a, make_patient, open_visit):
    settings.CARTWATCH = {**settings.CARTWATCH, "REMINDER_BATCH_SIZE": 2, "DISPATCH_PARALLEL": 3}
    visit = open_visit(make_patient(centre_a), NOW.date())
    assert dispatch.helpers_wanted(NOW) == 0
    for days in range(3, 6):
        add_reminder(visit, NOW, days_before=days)
    assert dispatch.helpers_wanted(NOW) == 1  # 3 due: a second batch
    for days in range(6, 12):
        add_reminder(visit, NOW, days_before=days)
    assert dispatch.helpers_wanted(NOW) == 2  # capped at DISPATCH_PARALLEL - 1
    assert dispatch.helpers_wanted(NOW - dt.timedelta(hours=1)) == 0  # none due yet
    settings.CARTWATCH = {**settings.CARTWATCH, "DISPATCH_PARALLEL": 1}
    assert dispatch.helpers_wanted(NOW) == 0
