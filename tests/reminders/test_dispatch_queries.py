"""A dispatch batch, a rendering ahead and a care team's daily digest read what their messages need in a fixed
number of reads, whatever their size: the reminders and the rows above them with only the columns a message and
its re-check read (a field left out would cost a query per reminder), their centres once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.models import Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Channel, Purpose
from surveillance.reminders import digests, dispatch, prepare
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def _email_batch(n: int, centre, make_patient, open_visit) -> list[Reminder]:
    """``n`` patients (every other one in Spanish, every third with a booked day) with a patient reminder and a
    care-team escalation each, all due now."""
    rows = []
    for i in range(n):
        patient = make_patient(centre, preferred_language="es" if i % 2 else "en")
        visit = open_visit(patient, NOW.date(), occurrence=900 + i)
        if i % 3 == 0:
            visit.booked_for, visit.booked_source = visit.due_date, f"Appointment/{i}"
            visit.save(update_fields=["booked_for", "booked_source"])
        rows.append(add_reminder(visit, NOW))
        rows.append(add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE, days_before=0))
    return rows


def _reads(captured: CaptureQueriesContext) -> list[str]:
    """The statements that read (each message's outcome is a write of its own, on SQLite through the ORM)."""
    return [query["sql"] for query in captured.captured_queries if query["sql"].startswith("SELECT")]


def _queries_of_a_batch(rows: list[Reminder]) -> list[str]:
    cache.clear()  # each batch reads its centre's closures
    with CaptureQueriesContext(connection) as captured:
        result = dispatch.dispatch_batch(NOW, batch_size=len(rows))
    assert (result.handled, result.sent) == (len(rows), len(rows))
    assert Reminder.objects.filter(pk__in=[r.pk for r in rows], status=ReminderStatus.SENT).count() == len(rows)
    return _reads(captured)


def test_it_sends_a_batch_of_emails_in_the_same_reads_whatever_its_size(
    smtp_settings, centre_a, make_patient, open_visit
):
    small = _queries_of_a_batch(_email_batch(2, centre_a, make_patient, open_visit))
    large = _queries_of_a_batch(_email_batch(6, centre_a, make_patient, open_visit))

    assert len(large) == len(small)
    assert len(smtp_settings.messages) == 16


def test_it_sends_a_batch_of_sms_in_the_same_reads_whatever_its_size(
    twilio_settings, centre_a, make_patient, open_visit
):
    def batch(n: int) -> list[Reminder]:
        patients = [
            make_patient(centre_a, phone=f"+1617555{i:04d}", sms_consent=True, preferred_channel="sms", email="")
            for i in range(n)
        ]
        return [
            add_reminder(open_visit(patient, NOW.date(), occurrence=900 + i), NOW, channel=Channel.SMS)
            for i, patient in enumerate(patients)
        ]

    small = _queries_of_a_batch(batch(2))
    large = _queries_of_a_batch(batch(5))

    assert len(large) == len(small)
    assert len(twilio_settings.messages) == 7


def test_it_loads_no_name_or_record_number_of_the_patients_it_writes_to(
    smtp_settings, centre_a, make_patient, open_visit
):
    rows = _email_batch(2, centre_a, make_patient, open_visit)
    loaded = []
    render = dispatch.EmailTransport.build

    def build(transport, reminder, now):
        loaded.append(reminder.visit.infusion.patient.get_deferred_fields())
        return render(transport, reminder, now)

    dispatch.EmailTransport.build = build
    try:
        dispatch.dispatch_batch(NOW, batch_size=len(rows))
    finally:
        dispatch.EmailTransport.build = render

    assert len(loaded) == len(rows)
    for deferred in loaded:
        assert {"mrn", "given_name", "family_name", "birth_date"} <= deferred


def test_it_renders_ahead_in_the_same_reads_whatever_the_number_due(smtp_settings, centre_a, make_patient, open_visit):
    def queries(n: int) -> int:
        _email_batch(n, centre_a, make_patient, open_visit)
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            result = prepare.reminders_prepare(NOW)
        assert result.prepared == 2 * n
        return len(_reads(captured))

    assert queries(2) == queries(5)


def test_it_lists_a_days_window_notices_in_the_same_reads_whatever_their_number(
    smtp_settings, centre_a, make_patient, open_visit
):
    def queries(day: int, n: int) -> int:
        morning = dt.datetime(2026, 11, 2 + day, 13, tzinfo=UTC)  # 08:00 in New York
        for _ in range(n):
            visit = open_visit(make_patient(centre_a), morning.date() + dt.timedelta(days=8))  # opened 2 days ago
            add_reminder(visit, morning, audience=Audience.CARE_TEAM, purpose=Purpose.WINDOW_OPEN, days_before=0)
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            result = digests.daily_digests_send(morning)
        assert (result.sent, result.listed) == (1, n)
        return len(_reads(captured))

    assert queries(0, 2) == queries(1, 5)
