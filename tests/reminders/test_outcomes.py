"""Each message's outcome is recorded as soon as the server gives it, before the next message is handed over, so a
worker lost mid-group leaves at most the message in flight in doubt; the hand-off markers still go a group at a
time. The dispatcher runs outside any transaction here, as in a worker: on PostgreSQL each outcome is answered
only when the next message is about to go."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from surveillance.models import Delivery, Reminder, ReminderStatus
from surveillance.models.reminders import DeliveryOutcome
from surveillance.reminders import dispatch
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db(transaction=True)
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


class WorkerLost(BaseException):
    """Stands for the worker's end after the server took the message (nothing of the dispatcher runs after it)."""


def _states(reminders: list[Reminder]) -> list[tuple[str, str]]:
    """Each reminder's status and its marker's outcome (or "" before its group was handed over)."""
    markers = dict(Delivery.objects.values_list("reminder_id", "outcome"))
    status = dict(Reminder.objects.values_list("pk", "status"))
    return [(status[r.pk], markers.get(r.pk, "")) for r in reminders]


@pytest.fixture
def five_due(settings, smtp_settings, centre_a, make_patient, open_visit) -> list[Reminder]:
    settings.CARTWATCH = {**settings.CARTWATCH, "REMINDER_COMMIT_EVERY": 5}
    visit = open_visit(make_patient(centre_a), NOW.date())
    return [add_reminder(visit, NOW, days_before=d) for d in range(3, 8)]


def test_it_records_each_outcome_before_the_next_message_is_handed_over(five_due, smtp_settings, monkeypatch):
    smtp_settings.answers.extend(["250 OK", "451 4.3.0 try later"])  # the second is refused for now
    seen = []
    send = dispatch.EmailTransport.send

    def watched(transport, reminder, payload, settle):
        def settled():  # the last moment before the message's data goes to the server
            settle()
            seen.append((smtp_settings.data_commands, _states(five_due)))

        return send(transport, reminder, payload, settled)

    monkeypatch.setattr(dispatch.EmailTransport, "send", watched)
    result = dispatch.dispatch_run(NOW)

    assert (result.sent, result.retried) == (4, 1)
    sent, sending, pending = ReminderStatus.SENT, ReminderStatus.SENDING, ReminderStatus.PENDING
    handed, told, retry = DeliveryOutcome.SENDING, DeliveryOutcome.SENT, DeliveryOutcome.RETRY
    # the server has had n messages' data, and the n outcomes are recorded, when the next message's data goes
    assert seen[0] == (0, [(sending, handed)] * 5)  # the group's markers, all committed before its first message
    assert seen[2] == (2, [(sent, told), (pending, retry)] + [(sending, handed)] * 3)
    assert seen[4] == (4, [(sent, told), (pending, retry), (sent, told), (sent, told), (sending, handed)])


def test_it_leaves_only_the_message_in_flight_in_doubt_when_the_worker_is_lost(five_due, smtp_settings, monkeypatch):
    send = dispatch.EmailTransport.send

    def lost_on_the_third(transport, reminder, payload, settle):
        message_id = send(transport, reminder, payload, settle)
        if len(smtp_settings.messages) == 3:
            raise WorkerLost  # the server has the third message; the worker never records it
        return message_id

    monkeypatch.setattr(dispatch.EmailTransport, "send", lost_on_the_third)
    with pytest.raises(WorkerLost):
        dispatch.dispatch_run(NOW)
    monkeypatch.undo()

    lease = dt.timedelta(seconds=dispatch._cfg("REMINDER_LEASE_SECONDS") + 1)
    dispatch.dispatch_run(NOW + lease)

    copies = [sum(m["X-CARTWatch-Reminder"] == str(r.pk) for m in smtp_settings.messages) for r in five_due]
    assert copies == [1, 1, 2, 1, 1]  # the two accepted before are not sent again
    assert Reminder.objects.filter(status=ReminderStatus.SENT).count() == 5
    flags = [set(r.deliveries.values_list("outcome", "possible_duplicate")) for r in five_due]
    assert flags[:2] == [{(DeliveryOutcome.SENT, False)}] * 2
    # from the one in flight on, nothing durable says whether the server had them: re-sent, flagged
    assert flags[2:] == [{(DeliveryOutcome.RECLAIMED, True), (DeliveryOutcome.SENT, True)}] * 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements")
def test_it_marks_a_message_sent_with_a_prepared_statement_that_does_not_wait_for_the_disk(five_due):
    assert dispatch.dispatch_run(NOW).sent == 5

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%%synchronous_commit%%'")
        [(statement,)] = cursor.fetchall()
    assert "set_config('synchronous_commit', 'off', true)" in statement


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no server-side statements")
def test_it_marks_a_message_sent_after_the_sessions_statements_were_dropped(five_due, smtp_settings, monkeypatch):
    send = dispatch.EmailTransport.send

    def dropped_each_time(transport, reminder, payload, settle):
        def settled():
            settle()
            connection.connection.execute("DEALLOCATE ALL")  # as psycopg does after a rollback goes by

        return send(transport, reminder, payload, settled)

    monkeypatch.setattr(dispatch.EmailTransport, "send", dropped_each_time)
    assert dispatch.dispatch_run(NOW).sent == 5
    assert set(Reminder.objects.values_list("status", flat=True)) == {ReminderStatus.SENT}
    assert set(Delivery.objects.values_list("outcome", flat=True)) == {DeliveryOutcome.SENT}
    assert len(smtp_settings.messages) == 5
