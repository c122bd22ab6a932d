"""Dispatch as production runs it: real Celery workers, the beat task, rendering inside the timing.

The compose file's worker command (``celery -A config worker --concurrency=2``: prefork, two slots) runs with
``DJANGO_ENV=production`` and the production defaults (batch size, commit group, dispatchers a run) against a
scratch database, on the broker of ``CELERY_BROKER_URL`` (a Redis server; a queue
of this run's own), and sends to a loopback SMTP server (aiosmtpd, in a process of its own). Each run writes
``BENCH_CELERY_MESSAGES`` (2,000) due patient reminders, not rendered ahead, one per patient and visit (a quarter
of the patients in Spanish; the centre has an address, a phone and opening hours), then sends the dispatch task
as beat sends it (its schedule entry's task and options, again at its interval while reminders are left) and
times from that message to the moment the server has received them all (its own count, not the database's: no
polling takes CPU from the workers), then checks that every reminder is recorded sent. Beside it, in the same
run, the raw rate: one of the messages sent N times over one reused connection by a bare smtplib loop to the same
server, just before and just after (the mean of the two). A warm-up run first (the worker's slots import, connect
and compile once); then the median of ``BENCH_CELERY_RUNS`` (3), each printed with the load average. Target: at
least 0.8 of raw.

Steadier than rates on a shared machine: the CPU the worker's slots, PostgreSQL and the SMTP server spent per
message over the timed runs (from ``/proc``), and the CPU per message of one dispatcher in this process
(``dispatch_run`` over ``BENCH_CELERY_CPU_MESSAGES``, 500, rendering at send time) beside the raw loop's.
``BENCH_CELERY_PROFILE=1`` then profiles it with cProfile (by CPU time). Any ``CARTWATCH_*`` knob set in the
environment (``CARTWATCH_REMINDER_COMMIT_EVERY=1``...) reaches the workers as it would in production.
"""

from __future__ import annotations

import contextlib
import cProfile
import datetime as dt
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench._common import (
    ROOT,
    backends_of,
    children_of,
    cpu_seconds,
    median,
    print_profile,
    record,
    scratch_database,
    visit_window_open,
)
from bench.api_load import shared_cache_url
from bench.dispatch import apply_settings, mail_settings, rate_ratio, raw_rate, smtp_server, spawn_context

#: How long one run may take before the benchmark gives up on it.
DEADLINE_SECONDS = float(os.environ.get("BENCH_CELERY_DEADLINE_SECONDS", "600"))
#: Every fourth patient reads Spanish: both languages' templates, dates and subjects are in the timing.
SPANISH_EVERY = 4


def due_reminders(n: int, tag: str) -> list[int]:
    """``n`` due patient email reminders, one per patient and visit, written in bulk; none rendered ahead."""
    from django.conf import settings

    from surveillance.models import CarTProduct, FollowUpVisit, Infusion, Patient, Protocol, Reminder
    from surveillance.models import TreatmentCentre as Centre
    from surveillance.models.reminders import Audience, Purpose
    from surveillance.reminders.outbox import reminder_key
    from surveillance.seeds.loader import seeds_load

    if not Protocol.objects.exists():
        seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    protocol = Protocol.objects.current("standard")
    rule = protocol.rules.order_by("position").last()
    product = CarTProduct.objects.order_by("pk").first()
    centre = Centre.objects.create(
        code=tag,
        name=f"Bench Cancer Centre {tag}",
        time_zone="America/New_York",
        care_team_email="team@example.org",
        phone="+1 617 555 0100",
        address="450 Brookline Avenue\nBoston, MA 02215",
        opening_hours="Monday to Friday, 8:00 to 17:00",
    )
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    patients = Patient.objects.bulk_create(
        Patient(
            centre=centre,
            mrn=f"{tag}{i:06d}",
            email=f"patient{i}@example.org",
            preferred_language="es" if i % SPANISH_EVERY == SPANISH_EVERY - 1 else "en",
        )
        for i in range(n)
    )
    infusions = Infusion.objects.bulk_create(
        Infusion(patient=p, product=product, infusion_date=today - dt.timedelta(days=400), protocol=protocol)
        for p in patients
    )
    visits = FollowUpVisit.objects.bulk_create(
        visit_window_open(infusion, rule, today, due_in_days=5 + i % 7) for i, infusion in enumerate(infusions)
    )
    due = now - dt.timedelta(seconds=1)
    rows = Reminder.objects.bulk_create(
        Reminder(
            visit=visit,
            audience=Audience.PATIENT,
            purpose=Purpose.UPCOMING,
            days_before=2,
            idempotency_key=reminder_key(visit, Audience.PATIENT, Purpose.UPCOMING, 2),
            sequence=visit.sequence,
            send_after=due,
            next_attempt_at=due,
        )
        for visit in visits
    )
    ids = [r.pk for r in rows]
    assert ids == list(range(ids[0], ids[0] + n)), "the run's reminders are counted by their id range"
    return ids


def sent_count(ids: list[int]) -> int:
    """How many of a run's reminders are recorded sent (their ids are one range: they were written at once)."""
    from surveillance.models import Reminder, ReminderStatus

    return Reminder.objects.filter(pk__range=(ids[0], ids[-1]), status=ReminderStatus.SENT).count()


def sample_message(ids: list[int]) -> tuple[bytes, str, str]:
    """One of the run's messages as the server receives it, with its envelope: what the raw loop sends."""
    from surveillance.models import Reminder
    from surveillance.reminders import messages

    reminder = Reminder.objects.select_related("visit__infusion__patient__centre").get(pk=ids[0])
    sender, [recipient] = messages.reminder_envelope(reminder)
    return messages.reminder_bytes(reminder, now=dt.datetime.now(dt.UTC)), sender, recipient


class Worker:
    """The compose file's worker command on a queue of this run's own, its log in a file."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.queue = env["CELERY_TASK_DEFAULT_QUEUE"]
        self.log = folder / "worker.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=2"),
                    *("--queues", self.queue, "--hostname", f"{self.queue}@%h", "--without-gossip", "--without-mingle"),
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while " ready." not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {self.tail()}")
            time.sleep(0.2)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CpuMeter:
    """CPU seconds spent by groups of processes (``name -> pids function``) while a run goes on, sampled from
    ``/proc``: a process seen during the run counts from its first sample (a database backend lives as long as a
    task: Celery closes the connections around each), so a short-lived one may be counted short by one interval."""

    def __init__(self, groups: dict) -> None:
        self.groups = groups
        self.spent = dict.fromkeys(groups, 0.0)
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}

    def sample(self) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                seconds = cpu_seconds(lambda pid=pid: [pid])
                self.first.setdefault((name, pid), seconds)
                self.last[(name, pid)] = seconds

    def stop(self) -> None:
        """Add what each process spent since the run's first sample of it, and start afresh."""
        self.sample()
        for (name, pid), seconds in self.last.items():
            self.spent[name] += seconds - self.first[(name, pid)]
        self.first, self.last = {}, {}


def beat_run(app, queue: str, ids: list[int], accepted, meter: CpuMeter | None = None) -> float:
    """Send the dispatch task as beat does (its entry's task and options, again every interval while reminders
    are left) and return the seconds from the first message until the server has received one message per
    reminder (``accepted``: its counter), then check that every reminder is recorded sent.

    The end is read from the server's counter, not by asking the database over and over: on a machine of two cores
    that polling would take CPU from the workers, and add to the PostgreSQL CPU measured."""
    from django.conf import settings
    from django.db import connection

    entry = settings.CELERY_BEAT_SCHEDULE["dispatch-due-reminders"]
    target = accepted.value + len(ids)
    if meter:
        meter.sample()
    started = time.perf_counter()
    next_tick = next_sample = started
    while accepted.value < target:
        now = time.perf_counter()
        if now >= next_tick:
            app.send_task(entry["task"], queue=queue, **entry.get("options", {}))
            next_tick = now + entry["schedule"]
        if now - started > DEADLINE_SECONDS:
            raise RuntimeError(f"{target - accepted.value} messages not received after {DEADLINE_SECONDS:.0f} s")
        if meter and now >= next_sample:
            meter.sample()
            next_sample = now + 0.25
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if meter:
        meter.stop()
    deadline = time.monotonic() + 30  # the last outcome is recorded a moment after the server's answer
    while (recorded := sent_count(ids)) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ids) - recorded} reminders received but not recorded sent")
        time.sleep(0.1)
    connection.close()
    return elapsed


def worker_env(db_url: str, port: int, queue: str, folder: Path) -> dict[str, str]:
    """What compose gives the worker (its cache in the broker's Redis server), pointed at the scratch database, this
    run's queue and the loopback server."""
    return {
        **os.environ,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": db_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "CARTWATCH_CACHE_URL": shared_cache_url(),
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CARTWATCH_VAR_DIR": str(folder),
        "CARTWATCH_LOG_FORMAT": "plain",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def logs_discarded():
    """This process's log lines formatted and written as usual, but to nowhere (not onto the benchmark's output)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    with open(os.devnull, "w") as nowhere:
        streams = [h.setStream(nowhere) for h in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)


def one_dispatcher_cpu(port: int, n: int, profile: bool) -> tuple[float, float]:
    """CPU milliseconds per message of one dispatcher in this process (rendering at send time, logging at INFO as
    the workers do), and of the raw smtplib loop sending one of the same messages as many times. With ``profile``,
    one more dispatch of as many reminders runs under cProfile, timed by CPU (waits on the servers left out)."""
    from surveillance.reminders import dispatch

    apply_settings(mail_settings(port))
    due_reminders(min(n, 100), "cpu-warm")
    dispatch.dispatch_run(budget_seconds=3600)  # warm: templates, translations, connections
    ids = due_reminders(n, "cpu")
    payload, sender, recipient = sample_message(ids)
    started = time.process_time()
    result = dispatch.dispatch_run(budget_seconds=3600)
    dispatcher_ms = 1000 * (time.process_time() - started) / n
    assert result.sent == n == sent_count(ids), result
    started = time.process_time()
    raw_rate(port, payload, sender, recipient, n)
    raw_ms = 1000 * (time.process_time() - started) / n
    if profile:
        due_reminders(n, "profile")
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(dispatch.dispatch_run, budget_seconds=3600)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "dispatch.prof"
            profiler.dump_stats(path)
            print_profile(path)
    return dispatcher_ms, raw_ms


def throughput(db_url: str, n: int, runs: int) -> bool:
    from celery import Celery
    from django.conf import settings
    from django.db import connection

    queue = f"bench-dispatch-{uuid.uuid4().hex[:8]}"
    accepted = spawn_context().Value("Q", 0)
    server, stop, port = smtp_server(accepted)
    app = Celery("bench", broker=os.environ["CELERY_BROKER_URL"])
    rates, raws = [], []
    try:
        with tempfile.TemporaryDirectory() as folder:
            worker = Worker(worker_env(db_url, port, queue, Path(folder)), Path(folder))
            meter = CpuMeter(
                {
                    "worker": children_of(worker.proc.pid),
                    "PostgreSQL": backends_of(connection.settings_dict["NAME"]),
                    "SMTP server": lambda: [server.pid],
                }
            )
            try:
                beat_run(app, queue, due_reminders(max(200, n // 10), "warm"), accepted)
                for run in range(runs):
                    ids = due_reminders(n, f"run{run}")
                    payload, sender, recipient = sample_message(ids)
                    connection.close()
                    raw_before = raw_rate(port, payload, sender, recipient, n)
                    elapsed = beat_run(app, queue, ids, accepted, meter)
                    rates.append(n / elapsed)
                    # the loopback rate swings with where the scheduler puts the processes: measured on both sides
                    raws.append((raw_before + raw_rate(port, payload, sender, recipient, n)) / 2)
                    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                    print(
                        f"run {run + 1}: {n} reminders sent in {elapsed:.2f} s: {rates[-1]:.0f} msg/s, "
                        f"raw {raws[-1]:.0f} msg/s, ratio {rates[-1] / raws[-1]:.2f}; load average {load}",
                        flush=True,
                    )
            finally:
                worker.stop()
        cpu_n = int(os.environ.get("BENCH_CELERY_CPU_MESSAGES", "500"))
        with logs_discarded():
            dispatcher_ms, raw_ms = one_dispatcher_cpu(port, cpu_n, os.environ.get("BENCH_CELERY_PROFILE") == "1")
    finally:
        stop.set()
        server.join(timeout=10)
        app.close()
    cfg = settings.CARTWATCH
    per_message = ", ".join(f"{name} {1000 * seconds / (n * runs):.2f} ms" for name, seconds in meter.spent.items())
    print(
        f"worker: prefork, 2 slots; batch size {cfg['REMINDER_BATCH_SIZE']}, a commit every "
        f"{cfg['REMINDER_COMMIT_EVERY']} messages, {cfg['DISPATCH_PARALLEL']} dispatchers a run"
    )
    print(f"CPU per message over the timed runs: {per_message}")
    print(
        f"CPU per message, one dispatcher in this process ({cpu_n} messages): {dispatcher_ms:.2f} ms; "
        f"raw smtplib loop {raw_ms:.2f} ms"
    )
    rate, raw = median(rates), median(raws)
    ratio = rate_ratio(rates, raws)
    record(
        f"dispatch through Celery (compose worker, 2 slots), rendering included, {n:,} reminders (median of {runs})",
        f"{rate:.0f} msg/s; CPU per message: {per_message}; one dispatcher {dispatcher_ms:.2f} ms",
        f"raw smtplib {raw:.0f} msg/s ({raw_ms:.2f} ms CPU)",
        f"{ratio:.2f}",
        ">= 0.80",
        ratio >= 0.8,
    )
    return ratio >= 0.8


def main() -> int:
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        print("dispatch_celery: skipped (needs a Redis broker: set CELERY_BROKER_URL)")
        record("dispatch through Celery", "skipped (no Redis broker)", "-", "-", "-", None)
        return 0
    n = int(os.environ.get("BENCH_CELERY_MESSAGES", "2000"))
    runs = int(os.environ.get("BENCH_CELERY_RUNS", "3"))
    with scratch_database("celery") as db_url:
        ok = throughput(db_url, n, runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
