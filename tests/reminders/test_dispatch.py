"""The dispatcher sends what is due at its clock's "now" to a real SMTP server, at 09:00 local, once."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from unittest import mock

import pytest
from django.core.cache import cache

from surveillance.care import lifecycle, planning
from surveillance.models import Delivery, FollowUpVisit, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, DeliveryOutcome, Purpose
from surveillance.reminders import dispatch
from tests.ports import free_port
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NY = zoneinfo.ZoneInfo("America/New_York")


def _sent_for(smtp, reminder: Reminder):
    return [m for m in smtp.messages if m["X-CARTWatch-Reminder"] == str(reminder.pk)]


def test_it_sends_at_nine_local_on_both_sides_of_the_daylight_saving_change(
    smtp_settings, centre_a, make_patient, make_infusion
):
    patient = make_patient(centre_a, preferred_language="es")
    infusion = make_infusion(patient, infusion_date=dt.date(2025, 12, 10))
    planning.infusion_plan(infusion, now=dt.datetime(2026, 2, 1, 12, tzinfo=UTC))
    visit = (
        FollowUpVisit.objects.filter(infusion=infusion, due_date__range=(dt.date(2026, 3, 10), dt.date(2026, 3, 21)))
        .order_by("due_date")
        .first()
    )
    assert visit is not None
    before = Reminder.objects.get(visit=visit, audience=Audience.PATIENT, days_before=14)
    after = Reminder.objects.get(visit=visit, audience=Audience.PATIENT, days_before=2)
    assert before.send_after.astimezone(NY).date() < dt.date(2026, 3, 8) <= after.send_after.astimezone(NY).date()
    assert (before.send_after.hour, after.send_after.hour) == (14, 13)  # 09:00 EST, then 09:00 EDT

    for reminder in (before, after):
        nine = reminder.send_after
        assert nine.astimezone(NY).time() == dt.time(9, 0)
        dispatch.dispatch_run(nine - dt.timedelta(minutes=1))
        assert _sent_for(smtp_settings, reminder) == []
        dispatch.dispatch_run(nine)
        [message] = _sent_for(smtp_settings, reminder)
        assert message["To"] == patient.email
        assert message["Subject"].startswith("Recordatorio")
        assert message["Content-Language"] == "es"
        calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
        ics = calendar.get_content()
        assert f"UID:{visit.ics_uid()}" in ics and "SEQUENCE:0" in ics
        assert "DTSTART;VALUE=DATE:" + visit.due_date.strftime("%Y%m%d") in ics
        reminder.refresh_from_db()
        assert reminder.status == ReminderStatus.SENT and reminder.message_id == message["Message-ID"]


def test_it_retries_a_temporary_refusal_with_backoff_then_sends(smtp_settings, centre_a, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    reminder = add_reminder(open_visit(make_patient(centre_a), now.date()), now)
    smtp_settings.answers.extend(["451 4.7.1 Greylisted, try again later"] * 2)

    first = dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert (first.retried, reminder.status, reminder.last_smtp_code) == (1, ReminderStatus.PENDING, 451)
    assert reminder.next_attempt_at == now + dt.timedelta(seconds=60)
    assert dispatch.dispatch_run(now + dt.timedelta(seconds=59)).handled == 0  # not before its next attempt

    dispatch.dispatch_run(now + dt.timedelta(seconds=60))
    reminder.refresh_from_db()
    assert reminder.next_attempt_at == now + dt.timedelta(seconds=60 + 120)  # the delay doubles
    dispatch.dispatch_run(now + dt.timedelta(seconds=180))
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.SENT and reminder.attempts == 3
    assert list(reminder.deliveries.values_list("outcome", "smtp_code")) == [
        ("retry", 451),
        ("retry", 451),
        ("sent", 250),
    ]
    assert len(smtp_settings.messages) == 1


def test_it_fails_a_permanent_refusal_with_the_code_and_no_address(smtp_settings, centre_a, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    patient = make_patient(centre_a)
    reminder = add_reminder(open_visit(patient, now.date()), now)
    smtp_settings.answers.append(f"550 5.1.1 <{patient.email}>: mailbox unavailable")

    result = dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert result.failed == 1
    assert (reminder.status, reminder.last_smtp_code, reminder.attempts) == (ReminderStatus.FAILED, 550, 1)
    assert patient.email not in reminder.last_error and "mailbox unavailable" in reminder.last_error
    assert dispatch.dispatch_run(now + dt.timedelta(days=1)).handled == 0  # never retried


def test_it_fails_after_the_last_temporary_refusal(settings, smtp_settings, centre_a, make_patient, open_visit):
    settings.CARTWATCH = {**settings.CARTWATCH, "REMINDER_MAX_ATTEMPTS": 2}
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    reminder = add_reminder(open_visit(make_patient(centre_a), now.date()), now)
    smtp_settings.answers.extend(["421 4.3.2 shutting down", "452 4.2.2 over quota"])
    dispatch.dispatch_run(now)
    dispatch.dispatch_run(now + dt.timedelta(hours=1))
    reminder.refresh_from_db()
    assert (reminder.status, reminder.last_smtp_code) == (ReminderStatus.FAILED, 452)
    assert "retries exhausted" in reminder.last_error


def test_it_gives_the_batch_back_without_an_attempt_when_the_server_is_down(
    settings, centre_a, make_patient, open_visit
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    reminder = add_reminder(open_visit(make_patient(centre_a), now.date()), now)
    result = dispatch.dispatch_run(now)
    reminder.refresh_from_db()
    assert result.released == 1 and result.sent == 0
    assert (reminder.status, reminder.attempts, reminder.next_attempt_at) == (ReminderStatus.PENDING, 0, now)


def test_it_catches_up_after_downtime_but_never_sends_late_what_has_passed(
    smtp_settings, centre_a, make_patient, open_visit
):
    today = dt.date(2026, 11, 2)
    visit = open_visit(make_patient(centre_a), today)  # due 7 Nov, window to 22 Nov
    missed_moment = dt.datetime(2026, 10, 31, 13, tzinfo=UTC)
    catch_up = add_reminder(visit, missed_moment, days_before=7)
    escalation = add_reminder(visit, missed_moment, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE)
    dispatch.dispatch_run(dt.datetime(2026, 11, 2, 14, tzinfo=UTC))  # two days of downtime
    assert {m["X-CARTWatch-Reminder"] for m in smtp_settings.messages} == {str(catch_up.pk), str(escalation.pk)}

    stale = add_reminder(visit, dt.datetime(2026, 11, 5, 14, tzinfo=UTC), days_before=2)
    dispatch.dispatch_run(dt.datetime(2026, 11, 8, 14, tzinfo=UTC))  # back after the due date
    stale.refresh_from_db()
    assert stale.status == ReminderStatus.SKIPPED and stale.outcome_reason.startswith("stale")
    assert len(smtp_settings.messages) == 2


def test_it_skips_what_no_longer_applies_at_send_time(smtp_settings, centre_a, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    cancelled = open_visit(make_patient(centre_a), now.date())
    r_cancelled = add_reminder(cancelled, now)
    opted_out = make_patient(centre_a, reminders_opted_out_at=now)
    r_opted = add_reminder(open_visit(opted_out, now.date()), now)
    r_escalation = add_reminder(
        open_visit(opted_out, now.date(), occurrence=901), now, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE
    )
    deceased = make_patient(centre_a)
    r_deceased = add_reminder(open_visit(deceased, now.date()), now)
    moved = open_visit(make_patient(centre_a), now.date())
    r_moved = add_reminder(moved, now)

    # the changes happen after the rows were planned, straight in the database, as a concurrent request would
    FollowUpVisit.objects.filter(pk=cancelled.pk).update(status="cancelled", status_reason="patient request")
    type(deceased).objects.filter(pk=deceased.pk).update(status="deceased", status_date=now.date())
    FollowUpVisit.objects.filter(pk=moved.pk).update(sequence=1, due_date=moved.due_date + dt.timedelta(days=1))

    result = dispatch.dispatch_run(now)
    reasons = {r.pk: r.outcome_reason for r in Reminder.objects.filter(status=ReminderStatus.SKIPPED)}
    assert reasons == {
        r_cancelled.pk: "visit cancelled",
        r_opted.pk: "patient opted out of routine reminders",
        r_deceased.pk: "patient deceased",
        r_moved.pk: "visit moved",
    }
    assert result.skipped == 4 and result.sent == 1
    [message] = smtp_settings.messages
    assert message["X-CARTWatch-Reminder"] == str(r_escalation.pk)  # safety escalations still go out
    assert message["To"] == centre_a.care_team_email
    assert Delivery.objects.filter(outcome=DeliveryOutcome.SKIPPED).count() == 4


def test_it_sends_a_completed_visits_reminders_nowhere(smtp_settings, centre_a, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    visit = open_visit(make_patient(centre_a), now.date())
    add_reminder(visit, now)
    lifecycle.visit_mark_completed(visit, completed_on=now.date() - dt.timedelta(days=1), now=now)
    dispatch.dispatch_run(now)
    assert smtp_settings.messages == []
    assert not Reminder.objects.filter(visit=visit, status=ReminderStatus.PENDING).exists()


def test_it_reads_each_centres_closures_once_a_batch(smtp_settings, centre_a, centre_b, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    for centre in (centre_a, centre_b, centre_a, centre_b, centre_a):
        add_reminder(open_visit(make_patient(centre), now.date()), now)
    with mock.patch.object(cache, "get_or_set", wraps=cache.get_or_set) as read:
        assert dispatch.dispatch_batch(now).sent == 5
    assert sorted(c.args[0] for c in read.call_args_list) == sorted(
        f"cartwatch:centre-closures:{centre.pk}" for centre in (centre_a, centre_b)
    )
