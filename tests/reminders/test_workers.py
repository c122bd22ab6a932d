"""Real worker and beat processes on a Redis broker, sending to a real SMTP server on loopback: reminders are
never lost and never doubled through crashes, broker loss and concurrent dispatchers."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import redis
from django.utils import timezone

from surveillance.care import planning
from surveillance.models import Delivery, Reminder, ReminderStatus
from surveillance.models.reminders import Audience, DeliveryOutcome
from tests.reminders.conftest import add_reminder, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.services]
FAST_BEAT = {"CARTWATCH_DISPATCH_INTERVAL_SECONDS": "1"}


def _mail_env(smtp, **extra: str) -> dict:
    return {"EMAIL_URL": smtp.url, "EMAIL_TIMEOUT": "5", **extra}


def _due_reminders(open_visit, make_patient, centre, count: int, per_visit: int = 50) -> list[Reminder]:
    now = timezone.now()
    rows = []
    for _v in range((count + per_visit - 1) // per_visit):
        visit = open_visit(make_patient(centre), timezone.localdate(now, centre.tz))
        for d in range(min(per_visit, count - len(rows))):
            rows.append(add_reminder(visit, now - dt.timedelta(seconds=1), days_before=100 + d))
    return rows


def _all_sent(ids) -> bool:
    return Reminder.objects.filter(pk__in=ids, status=ReminderStatus.SENT).count() == len(ids)


def _per_reminder(smtp) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in smtp.messages:
        counts[message["X-CARTWatch-Reminder"]] = counts.get(message["X-CARTWatch-Reminder"], 0) + 1
    return counts


def _killed_while_stalled(processes, env: dict, gate, stalled, what: str) -> None:
    """A worker starts a run and is killed once the server stalls it (``gate`` closed, ``stalled`` set); then the
    server goes on."""
    gate.clear()
    doomed = processes.worker("doomed", **env)
    processes.send()
    wait_until(stalled.is_set, 30, message=what)
    processes.kill(doomed)
    gate.set()


def _rescued(processes, env: dict, ids: list[int], what: str) -> None:
    """Another worker and a beat take the dead worker's reminders back after their lease, and send them."""
    processes.worker("rescuer", **env)
    processes.beat(**FAST_BEAT)
    wait_until(lambda: _all_sent(ids), 60, message=what)


def test_it_plans_an_infusion_and_the_worker_sends_what_is_due(
    processes, smtp_server, centre_a, make_patient, make_infusion
):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    patient = make_patient(centre_a, preferred_language="es")
    planning.infusion_plan(make_infusion(patient, infusion_date=today - dt.timedelta(days=80)))
    due = set(
        Reminder.objects.filter(status=ReminderStatus.PENDING, next_attempt_at__lte=timezone.now()).values_list(
            "pk", flat=True
        )
    )
    later = Reminder.objects.filter(status=ReminderStatus.PENDING, next_attempt_at__gt=timezone.now())
    assert Reminder.objects.filter(pk__in=due, audience=Audience.PATIENT).exists() and later.exists()

    processes.worker(**_mail_env(smtp_server))
    processes.beat(**FAST_BEAT)
    wait_until(lambda: _all_sent(due), 60, message="the due reminders")
    time.sleep(2)  # a few more beats: nothing else is due, nothing else goes
    assert set(_per_reminder(smtp_server)) == {str(pk) for pk in due}
    assert all(n == 1 for n in _per_reminder(smtp_server).values())
    to_patient = smtp_server.to(patient.email)
    assert to_patient and all(m["Subject"].startswith("Recordatorio") for m in to_patient), [
        m["Subject"] for m in to_patient
    ]
    assert all(any(p.get_content_type() == "text/calendar" for p in m.walk()) for m in to_patient)
    assert all(r.send_after.astimezone(patient.tz).time() == dt.time(9) for r in later)


def test_it_sends_200_due_reminders_exactly_once_with_two_dispatchers(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    reminders = _due_reminders(open_visit, make_patient, centre_a, 200)
    smtp_server.delay = 0.01
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_BATCH_SIZE="10")
    processes.worker("w1", **env)
    processes.worker("w2", **env)
    for _ in range(4):
        processes.send()
    wait_until(lambda: _all_sent([r.pk for r in reminders]), 120, message="200 reminders")
    time.sleep(1)
    assert len(smtp_server.messages) == 200
    assert len(set(smtp_server.message_ids())) == 200
    workers = {w.rsplit(":", 1)[0] for w in Delivery.objects.filter(outcome="sent").values_list("worker", flat=True)}
    assert len(workers) == 2  # both dispatchers took part
    assert Delivery.objects.filter(outcome="sent").count() == 200


def test_it_asks_an_idle_worker_to_join_a_run_that_finds_a_burst_due(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    reminders = _due_reminders(open_visit, make_patient, centre_a, 200)
    smtp_server.delay = 0.01
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_BATCH_SIZE="10", CARTWATCH_DISPATCH_PARALLEL="2")
    processes.worker("w1", **env)
    processes.worker("w2", **env)
    processes.send()  # one run, as beat asks every minute
    wait_until(lambda: _all_sent([r.pk for r in reminders]), 120, message="200 reminders")
    time.sleep(1)
    assert len(smtp_server.messages) == len(set(smtp_server.message_ids())) == 200
    workers = {w.rsplit(":", 1)[0] for w in Delivery.objects.filter(outcome="sent").values_list("worker", flat=True)}
    assert len(workers) == 2  # the second worker joined the run


def test_it_loses_nothing_when_a_worker_dies_before_handing_a_message_over(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    [reminder] = _due_reminders(open_visit, make_patient, centre_a, 1)
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_LEASE_SECONDS="12")
    # the server stalls before any message is handed over
    _killed_while_stalled(processes, env, smtp_server.ehlo_gate, smtp_server.stalled_at_ehlo, "the worker to connect")
    reminder.refresh_from_db()
    assert reminder.status == ReminderStatus.SENDING  # claimed, and its worker is gone

    _rescued(processes, env, [reminder.pk], "the reclaimed reminder")
    assert len(smtp_server.messages) == 1
    outcomes = list(reminder.deliveries.values_list("outcome", "possible_duplicate"))
    assert outcomes == [(DeliveryOutcome.RECLAIMED, False), (DeliveryOutcome.SENT, False)]


def test_it_flags_the_duplicate_when_a_worker_dies_after_the_server_accepted(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    [reminder] = _due_reminders(open_visit, make_patient, centre_a, 1)
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_LEASE_SECONDS="12")
    # the server keeps the message, then stalls before saying 250
    _killed_while_stalled(
        processes, env, smtp_server.accept_gate, smtp_server.stalled_after_accept, "the server to accept"
    )
    _rescued(processes, env, [reminder.pk], "the reclaimed reminder")
    first, second = smtp_server.messages
    assert first["Message-ID"] == second["Message-ID"] == reminder.deliveries.last().message_id
    outcomes = list(reminder.deliveries.values_list("outcome", "possible_duplicate"))
    assert outcomes == [(DeliveryOutcome.RECLAIMED, True), (DeliveryOutcome.SENT, True)]


def test_it_doubles_only_the_message_in_flight_when_a_worker_dies_mid_group(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    reminders = _due_reminders(open_visit, make_patient, centre_a, 5)
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_LEASE_SECONDS="12", CARTWATCH_REMINDER_COMMIT_EVERY="5")
    smtp_server.hold_from = 3  # two messages go through; the third is delivered, the worker never hears "250"
    _killed_while_stalled(
        processes, env, smtp_server.accept_gate, smtp_server.stalled_after_accept, "the server to accept"
    )
    ids = [r.pk for r in reminders]
    _rescued(processes, env, ids, "the reclaimed group")
    time.sleep(2)  # a few more beats: nothing else goes
    counts = _per_reminder(smtp_server)
    assert sorted(counts.values()) == [1, 1, 1, 1, 2]  # the two answered before were recorded sent at once
    doubled = next(m for m in smtp_server.messages if counts[m["X-CARTWatch-Reminder"]] == 2)
    copies = [m for m in smtp_server.messages if m["X-CARTWatch-Reminder"] == doubled["X-CARTWatch-Reminder"]]
    assert len({m["Message-ID"] for m in copies}) == 1
    flags = dict(
        Delivery.objects.filter(reminder_id__in=ids, outcome=DeliveryOutcome.SENT).values_list(
            "reminder_id", "possible_duplicate"
        )
    )
    # the re-sends are flagged: the one in flight, and the group's two never handed over (nothing durable
    # tells them apart); the two the server had answered were never re-sent
    assert sorted(flags.values()) == [False, False, True, True, True]
    assert flags[int(doubled["X-CARTWatch-Reminder"])] is True


def test_it_keeps_an_outcome_whose_answer_the_dead_worker_never_read(
    processes, smtp_server, centre_a, make_patient, open_visit
):
    reminders = _due_reminders(open_visit, make_patient, centre_a, 5)
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_LEASE_SECONDS="12", CARTWATCH_REMINDER_COMMIT_EVERY="5")
    # two messages are accepted; the worker has sent the second's outcome to the database and stalls at the third's
    # MAIL FROM, before it reads the database's answer (it does so only after the server's 354)
    smtp_server.hold_mail_from = 3
    _killed_while_stalled(processes, env, smtp_server.mail_gate, smtp_server.stalled_at_mail, "the third MAIL FROM")
    _rescued(processes, env, [r.pk for r in reminders], "the reclaimed group")
    time.sleep(2)  # a few more beats: nothing else goes
    assert sorted(_per_reminder(smtp_server).values()) == [1, 1, 1, 1, 1]  # the second was not sent again
    flags = [set(r.deliveries.values_list("outcome", "possible_duplicate")) for r in reminders]
    assert flags[:2] == [{(DeliveryOutcome.SENT, False)}] * 2
    # the group's three never handed over: re-sent once each, flagged (nothing durable says they were not)
    assert flags[2:] == [{(DeliveryOutcome.RECLAIMED, True), (DeliveryOutcome.SENT, True)}] * 3


def test_it_sends_every_due_reminder_once_after_the_broker_is_stopped_or_flushed(
    processes, private_redis, smtp_server, centre_a, make_patient, open_visit
):
    env = {**_mail_env(smtp_server), "CELERY_BROKER_URL": private_redis.url}
    worker = processes.worker("w1", **env)
    processes.beat(**FAST_BEAT, CELERY_BROKER_URL=private_redis.url)

    private_redis.stop()  # the broker goes away with whatever it held
    during_outage = _due_reminders(open_visit, make_patient, centre_a, 5)
    time.sleep(3)
    private_redis.start()  # an empty broker comes back
    wait_until(lambda: _all_sent([r.pk for r in during_outage]), 90, message="reminders due during the outage")

    processes.kill(worker)
    flushed = _due_reminders(open_visit, make_patient, centre_a, 5)
    time.sleep(3)  # beat queues dispatch messages nobody takes...
    redis.Redis.from_url(private_redis.url).flushall()  # ...and they are lost
    processes.worker("w2", **env)
    wait_until(lambda: _all_sent([r.pk for r in flushed]), 90, message="reminders due when the broker was flushed")
    time.sleep(2)
    assert _per_reminder(smtp_server) == {str(r.pk): 1 for r in [*during_outage, *flushed]}


def test_it_sends_one_message_per_reminder_with_two_beats(processes, smtp_server, centre_a, make_patient, open_visit):
    reminders = _due_reminders(open_visit, make_patient, centre_a, 30, per_visit=10)
    smtp_server.delay = 0.02
    env = _mail_env(smtp_server, CARTWATCH_REMINDER_BATCH_SIZE="5")
    processes.worker("w1", **env)
    processes.worker("w2", **env)
    processes.beat("beat1", **FAST_BEAT)
    processes.beat("beat2", **FAST_BEAT)
    wait_until(lambda: _all_sent([r.pk for r in reminders]), 90, message="30 reminders")
    time.sleep(3)
    assert _per_reminder(smtp_server) == {str(r.pk): 1 for r in reminders}
    assert len(set(smtp_server.message_ids())) == 30
