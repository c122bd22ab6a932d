"""Drills that prove the reminder engine loses nothing and sends nothing twice when things break.

Four drills, each against real Celery worker and beat processes, a PostgreSQL cluster and a Redis server of the
drill's own (started here on free ports, in a temporary directory, and removed at the end: the machine's shared
PostgreSQL and Redis are never touched), an SMTP server on loopback that counts the messages it accepts per
reminder (the ``X-CARTWatch-Reminder`` header) and keeps their Message-IDs, and a loopback Twilio
(``bench._twilio``) that the workers' Twilio backend sends SMS to through the SDK, which keeps every message it
accepts (each SMS patient has a number of their own, so its messages count per reminder):

1. ``kill-worker``: worker processes dispatch ``BENCH_DRILL_REMINDERS`` (10,000) reminders, a quarter of them by
   SMS (``BENCH_DRILL_SMS_PERCENT``), while one of them is killed with SIGKILL (its whole process group) and
   started again, until every reminder is sent. A kill comes once the servers have accepted another tenth of the
   reminders since the last one (``BENCH_DRILL_KILL_EVERY`` messages), at least ~3 s after it, and only when the
   worker is ready: the drill makes the same number of kills, each in the middle of sending, however fast the
   machine is. (Kills paced by the clock alone made a loaded machine's run a storm of kills of workers that had
   barely sent anything, whose claimed batches then waited out their leases.)
2. ``restart-postgres``: PostgreSQL is stopped (fast mode: sessions cut, transactions aborted) while the workers are
   dispatching, and started again a few seconds later.
3. ``stop-redis``: the broker is stopped for ``BENCH_DRILL_OUTAGE_SECONDS`` (60), once sending is under way,
   and comes back empty, with reminders falling due before, during and after the outage.
4. ``two-beats``: two beats tick at once, feeding two workers.

Each drill ends with one line: ``drill <name>: expected N, sent N, lost N, duplicated N (flagged N), not attempted
N``, then its verdict (``verdict <name>: PASS``, ``FAIL: ...`` or ``INCOMPLETE: ...``). A drill that sends on
more than one channel first prints the same line for each (``drill kill-worker [sms]: ...``), and its verdict ends
with each channel's counts; the drill passes only if every channel does. *Sent* counts the reminders the channel's
server accepted at least once, *lost* those a worker took up and the server never got (or whose row did not end
``sent``), *duplicated* those it got more than once, and *flagged* the duplicates that are the accepted kind: a
worker died after handing the message over, so every copy is the same message (email: the same Message-ID, the
row's; SMS: the same text, and the row keeps the provider id of one of the copies) and the reminder's deliveries
are marked ``possible_duplicate``. *Not attempted* are rows no worker ever took up before the drill's time ran out:
that says the machine was too slow for the drill's budget, not that delivery lost them, so the verdict is
``INCOMPLETE``. The run fails unless every drill passes.

Knobs: ``BENCH_DRILL_REMINDERS`` (10000, the kill drill; the other drills use a fifth of it, at least 100),
``BENCH_DRILL_OUTAGE_SECONDS`` (60), ``BENCH_DRILL_WORKERS`` (2), ``BENCH_DRILL_KILL_SECONDS`` (3),
``BENCH_DRILL_KILL_EVERY`` (a tenth of the kill drill's reminders),
``BENCH_DRILL_SMS_PERCENT`` (25, the kill drill's share of SMS reminders),
``BENCH_DRILL_ONLY`` (comma-separated drill names), ``BENCH_DRILL_SEED`` (the kill schedule's random seed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import free_port
from bench._postgres import Postgres
from bench._twilio import TwilioDouble

REPO = Path(__file__).resolve().parents[1]
CHILD_MARK = "CARTWATCH_DRILLS_CHILD"
DRILLS = ("kill-worker", "restart-postgres", "stop-redis", "two-beats")
#: Settings of every process of a drill: short leases and a beat every second, so that recovery takes seconds.
SHORT_SETTINGS = {
    "CARTWATCH_DISPATCH_INTERVAL_SECONDS": "1",
    "CARTWATCH_WEBHOOK_INTERVAL_SECONDS": "3600",
    "CARTWATCH_REMINDER_LEASE_SECONDS": "12",
    "CARTWATCH_DISPATCH_BUDGET_SECONDS": "5",
    "CARTWATCH_REMINDER_BATCH_SIZE": "25",
    "CARTWATCH_REMINDER_RETRY_SECONDS": "1",
    "EMAIL_TIMEOUT": "2",
    "CARTWATCH_SMS_TIMEOUT": "2",
}
_HEADER = re.compile(rb"^X-CARTWatch-Reminder:[ \t]*(\d+)", re.MULTILINE | re.IGNORECASE)
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


def say(text: str) -> None:
    print(text, flush=True)


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "") or default)


# --- the services of the drill's own ---------------------------------------------------------------------------
#: The drills' server need not survive a crash of the machine (its data goes at the end): no waiting on the disk.
DRILL_PG_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "60"}


class Redis:
    """A broker of the drill's own, which it may stop without touching anyone else's; it keeps nothing on disk."""

    def __init__(self, root: Path) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server not found")
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def alive(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self.alive, 15, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None


class SMTPCounter:
    """aiosmtpd handler: accepts everything and counts what it accepted, per reminder, with the Message-IDs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.counts: Counter[int] = Counter()
            self.message_ids: dict[int, set[str]] = {}
            self.total = 0

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        head = content.split(b"\r\n\r\n", 1)[0]
        match, message_id = _HEADER.search(head), _MESSAGE_ID.search(head)
        if match:
            pk = int(match.group(1))
            with self.lock:
                self.counts[pk] += 1
                self.message_ids.setdefault(pk, set()).add(message_id.group(1).decode() if message_id else "")
                self.total += 1
        # counted once stored, as a real server would deliver it even if the client never reads the answer
        return "250 2.0.0 Message accepted for delivery"

    def snapshot(self) -> tuple[Counter[int], dict[int, set[str]]]:
        with self.lock:
            return Counter(self.counts), {k: set(v) for k, v in self.message_ids.items()}


class Fleet:
    """Celery worker and beat processes, each in its own process group so that a kill takes all of it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root / "processes"
        self.root.mkdir(exist_ok=True)
        self.env = env
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[int, Path] = {}
        self.serial = 0

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        self.serial += 1
        path = self.root / f"{self.serial:04d}-{name}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", *args],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[proc.pid] = path
        self.procs.append(proc)
        return proc

    def worker(self, name: str, *, wait: bool = True) -> subprocess.Popen:
        args = ["worker", "--pool=solo", "--loglevel=INFO", "-n", f"{name}@%h"]
        proc = self._start(name, [*args, "--without-gossip", "--without-mingle", "--without-heartbeat"])
        if wait:
            wait_for(lambda: self.ready(proc) or proc.poll() is not None, 90, f"worker {name}")
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited: {self.tail(proc)}")
        return proc

    def ready(self, proc: subprocess.Popen) -> bool:
        return " ready." in self.logs[proc.pid].read_text(errors="replace")

    def beat(self, name: str) -> subprocess.Popen:
        return self._start(name, ["beat", "--loglevel=INFO", f"--schedule={self.root / (name + '-schedule')}"])

    def tail(self, proc: subprocess.Popen, lines: int = 15) -> str:
        return "\n".join(self.logs[proc.pid].read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 15) -> None:
        """Signal the process's whole group (only while the leader is not reaped: its id is still ours)."""
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def stop_all(self) -> None:
        """SIGTERM to every live group, SIGKILL to what is left after 15 s."""
        live = [p for p in self.procs if p.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in live:
            self.kill(proc)
        self.procs = []


# --- the data ---------------------------------------------------------------------------------------------------
#: Every SMS patient of a run has a number of their own: the counting Twilio tells reminders apart by it.
_PHONES = itertools.count(1)


def make_reminders(tag: str, moments: list[dt.datetime], channel: str = "email") -> list[int]:
    """One due patient reminder per moment, written in bulk; returns their ids. Email reminders go 100 to a visit
    (the message's header names the reminder); an SMS names nothing, so each SMS reminder is the only one of a
    patient with a number of their own, which the counting Twilio counts by."""
    from django.db import transaction

    from bench._common import open_visit
    from surveillance.models import Protocol, Reminder
    from surveillance.models import TreatmentCentre as Centre
    from surveillance.models.reminders import Audience, Purpose
    from surveillance.reminders.outbox import reminder_key

    per_visit = 1 if channel == "sms" else 100
    today = dt.datetime.now(dt.UTC).date()
    with transaction.atomic():
        centre, _ = Centre.objects.get_or_create(
            code="drills",
            defaults={"name": "Drill Centre", "time_zone": "UTC", "care_team_email": "team@example.org"},
        )
        protocol = Protocol.objects.current("standard")
        rows = []
        for v in range((len(moments) + per_visit - 1) // per_visit):
            phone = f"+1555{next(_PHONES):07d}" if channel == "sms" else ""
            visit = open_visit(centre, protocol, f"{tag}-{v:05d}", f"{tag}-{v}@example.org", today, phone=phone)
            for d, at in enumerate(moments[v * per_visit : (v + 1) * per_visit]):
                key = reminder_key(visit, Audience.PATIENT, Purpose.UPCOMING, 1000 + d)
                rows.append(
                    Reminder(
                        visit=visit,
                        audience=Audience.PATIENT,
                        purpose=Purpose.UPCOMING,
                        days_before=1000 + d,
                        idempotency_key=key,
                        sequence=visit.sequence,
                        send_after=at,
                        next_attempt_at=at,
                        channel=channel,
                    )
                )
        Reminder.objects.bulk_create(rows, batch_size=1000)
    return [r.pk for r in rows]


def db_query(fn, default=None):
    """Run an ORM read on a fresh connection; while the database is down, answer ``default``."""
    from django.db import DatabaseError, connections

    connections.close_all()
    try:
        return fn()
    except DatabaseError:
        return default
    finally:
        with contextlib.suppress(DatabaseError):
            connections.close_all()


def open_count(ids: list[int]) -> int | None:
    """Rows still to settle (pending or sending); None while the database cannot say."""
    from surveillance.models import Reminder, ReminderStatus

    return db_query(
        lambda: Reminder.objects.filter(pk__in=ids, status__in=[ReminderStatus.PENDING, ReminderStatus.SENDING]).count()
    )


@dataclass
class Outcome:
    name: str
    expected: int
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    flagged: int = 0
    unattempted: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: The same counts for each channel of a drill that sent on more than one (their sums are the drill's).
    channels: dict[str, Outcome] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.unattempted and self.duplicated == self.flagged and not self.problems

    def counts(self) -> str:
        return (
            f"expected {self.expected}, sent {self.sent}, lost {self.lost}, "
            f"duplicated {self.duplicated} (flagged {self.flagged})"
        )

    def line(self) -> str:
        return f"drill {self.name}: {self.counts()}, not attempted {self.unattempted}"

    def verdict(self) -> str:
        """One word and the reason: what a reader of the run needs first; then each channel's counts."""
        by_channel = "; ".join(f"{channel}: {c.counts()}" for channel, c in self.channels.items())
        by_channel = f" ({by_channel})" if by_channel else ""
        if self.lost or self.duplicated != self.flagged or self.problems:
            reasons = [f"{self.lost} lost"] if self.lost else []
            if self.duplicated != self.flagged:
                reasons.append(f"{self.duplicated - self.flagged} doubled without the flag")
            reasons += self.problems
            return f"verdict {self.name}: FAIL: {'; '.join(reasons)}{by_channel}"
        if self.unattempted:
            return (
                f"verdict {self.name}: INCOMPLETE: {self.unattempted} reminders never taken up in the time allowed"
                f"{by_channel}"
            )
        return f"verdict {self.name}: PASS{by_channel}"


@dataclass
class Received:
    """What one channel's counting server got: copies per reminder, whether each reminder's copies are all the one
    message its row records (email: one Message-ID, the row's; SMS: one text, and the row's provider id among
    those the server gave), and how many messages were for no reminder of the drill."""

    counts: Counter[int]
    same: dict[int, bool]
    strays: int


def email_received(smtp: SMTPCounter, ids: list[int], stored: dict[int, tuple]) -> Received:
    counts, message_ids = smtp.snapshot()
    same = {pk: message_ids[pk] == {stored[pk][1]} for pk in counts if pk in stored}
    return Received(counts, same, len(set(counts) - set(ids)))


def sms_received(twilio: TwilioDouble, ids: list[int], stored: dict[int, tuple]) -> Received:
    from surveillance.models import Reminder

    by_phone = dict(Reminder.objects.filter(pk__in=ids).values_list("visit__infusion__patient__phone", "pk"))
    counts: Counter[int] = Counter()
    bodies: dict[int, set[str]] = {}
    sids: dict[int, set[str]] = {}
    strays = 0
    for message in twilio.snapshot():
        pk = by_phone.get(message.get("To"))
        if pk is None:
            strays += 1
            continue
        counts[pk] += 1
        bodies.setdefault(pk, set()).add(message.get("Body", ""))
        sids.setdefault(pk, set()).add(message["Sid"])
    same = {pk: len(bodies[pk]) == 1 and stored.get(pk, ("",) * 4)[3] in sids[pk] for pk in counts}
    return Received(counts, same, strays)


def tally(name: str, ids_by_channel: dict[str, list[int]], rig: Rig) -> Outcome:
    """What the counting servers got, against what the outbox says, for each channel and in all."""
    from surveillance.models import Reminder

    every = [pk for ids in ids_by_channel.values() for pk in ids]
    stored = {
        pk: (status, message_id, attempts, provider_id)
        for pk, status, message_id, attempts, provider_id in Reminder.objects.filter(pk__in=every).values_list(
            "pk", "status", "message_id", "attempts", "provider_message_id"
        )
    }
    receivers = {"email": lambda ids: email_received(rig.smtp, ids, stored)}
    receivers["sms"] = lambda ids: sms_received(rig.twilio, ids, stored)
    per_channel = {
        channel: _tally_channel(f"{name} [{channel}]", ids, receivers[channel](ids), stored)
        for channel, ids in ids_by_channel.items()
    }
    if len(per_channel) == 1:
        outcome = next(iter(per_channel.values()))
        outcome.name = name
        return outcome
    outcome = Outcome(name, len(every), channels=per_channel)
    for channel, part in per_channel.items():
        for figure in ("sent", "lost", "duplicated", "flagged", "unattempted"):
            setattr(outcome, figure, getattr(outcome, figure) + getattr(part, figure))
        outcome.notes += [f"{channel}: {note}" for note in part.notes]
        outcome.problems += [f"{channel}: {problem}" for problem in part.problems]
    return outcome


def _tally_channel(name: str, ids: list[int], received: Received, stored: dict[int, tuple]) -> Outcome:
    from surveillance.models import Delivery, ReminderStatus
    from surveillance.models.reminders import DeliveryOutcome

    counts = received.counts
    outcome = Outcome(name, len(ids))
    rows = {pk: row[0] for pk, row in stored.items()}
    received_ids = [pk for pk in ids if counts[pk]]
    untouched = {pk for pk in ids if not counts[pk] and rows.get(pk) == ReminderStatus.PENDING and not stored[pk][2]}
    unsettled = [pk for pk in ids if rows.get(pk) != ReminderStatus.SENT and pk not in untouched]
    outcome.sent = len(received_ids)
    outcome.unattempted = len(untouched)
    outcome.lost = len((set(ids) - set(received_ids) | set(unsettled)) - untouched)
    if unsettled:
        states = Counter(rows.get(pk, "missing") for pk in unsettled)
        outcome.problems.append(f"rows not sent: {dict(states)}")
    doubled = [pk for pk in ids if counts[pk] > 1]
    outcome.duplicated = len(doubled)
    marked = set(
        Delivery.objects.filter(
            reminder_id__in=doubled, outcome=DeliveryOutcome.SENT, possible_duplicate=True
        ).values_list("reminder_id", flat=True)
    )
    for pk in doubled:
        same = received.same.get(pk, False)
        if pk in marked and same:
            outcome.flagged += 1
        else:
            outcome.notes.append(f"reminder {pk}: {counts[pk]} copies, the same message {same}, flag {pk in marked}")
    if received.strays:
        outcome.problems.append(f"{received.strays} messages for reminders outside the drill")
    return outcome


# --- the drills -------------------------------------------------------------------------------------------------
@dataclass
class Rig:
    root: Path
    postgres: Postgres
    redis: Redis
    smtp: SMTPCounter
    twilio: TwilioDouble
    env: dict[str, str]
    workers: int
    timeout: float
    fleets: list[Fleet] = field(default_factory=list)

    def accepted(self) -> int:
        """Messages the counting servers accepted, both channels."""
        return self.smtp.total + len(self.twilio.messages)

    def fleet(self) -> Fleet:
        """Processes for one drill; the rig keeps them too, so that an interrupted drill's are stopped at the end."""
        self.fleets.append(Fleet(self.root, self.env))
        return self.fleets[-1]


def settle(rig: Rig, ids: list[int], name: str, tick=None, timeout: float | None = None) -> None:
    """Wait until no row of the drill is pending or sending (``tick`` runs in between), then a little more."""
    deadline = time.monotonic() + (timeout or rig.timeout)
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        if tick:
            tick()
        if open_count(ids) == 0:
            return
        if time.monotonic() - last_report > 20:
            last_report = time.monotonic()
            say(f"  {name}: {rig.accepted()} messages accepted for {len(ids)} reminders")
        time.sleep(0.5)
    say(f"  {name}: gave up waiting after {timeout or rig.timeout:.0f}s")


def drill_kill_worker(rig: Rig, count: int) -> Outcome:
    interval = float(os.environ.get("BENCH_DRILL_KILL_SECONDS", "") or 3)
    spacing = max(1, _env_int("BENCH_DRILL_KILL_EVERY", max(1, count // 10)))
    rng = random.Random(_env_int("BENCH_DRILL_SEED", 2026))
    due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    by_sms = max(1, count * _env_int("BENCH_DRILL_SMS_PERCENT", 25) // 100)
    ids_by_channel = {
        "email": make_reminders("kill", [due] * (count - by_sms)),
        "sms": make_reminders("kill-sms", [due] * by_sms, channel="sms"),
    }
    ids = [pk for channel_ids in ids_by_channel.values() for pk in channel_ids]
    fleet = rig.fleet()
    kills = 0
    try:
        workers = [fleet.worker(f"kill{n}") for n in range(rig.workers)]
        fleet.beat("beat")
        victim = 0
        next_kill = time.monotonic() + interval * rng.uniform(0.7, 1.3)
        accepted_at_last_kill = 0

        def tick() -> None:
            nonlocal victim, next_kill, kills, accepted_at_last_kill
            if time.monotonic() < next_kill:
                return
            # a kill tests delivery only while the victim can be sending: it is ready, and messages are flowing
            if not fleet.ready(workers[victim]) or rig.accepted() < accepted_at_last_kill + spacing:
                return
            Fleet.kill(workers[victim])
            kills += 1
            accepted_at_last_kill = rig.accepted()
            workers[victim] = fleet.worker(f"kill{victim}-{kills}", wait=False)
            victim = (victim + 1) % len(workers)
            next_kill = time.monotonic() + interval * rng.uniform(0.7, 1.3)

        settle(rig, ids, "kill-worker", tick)
    finally:
        fleet.stop_all()
    outcome = tally("kill-worker", ids_by_channel, rig)
    outcome.notes.insert(0, f"{kills} workers killed with SIGKILL")
    return outcome


def drill_restart_postgres(rig: Rig, count: int) -> Outcome:
    now = dt.datetime.now(dt.UTC)
    ids = make_reminders("pg", [now - dt.timedelta(seconds=1)] * count)
    fleet = rig.fleet()
    note = "PostgreSQL was not restarted"
    try:
        for n in range(rig.workers):
            fleet.worker(f"pg{n}")
        fleet.beat("beat")
        wait_for(lambda: rig.smtp.total >= count // 3, rig.timeout, "the dispatch to get going", 0.05)
        before = rig.smtp.total
        rig.postgres.stop("fast")
        time.sleep(3)
        rig.postgres.start()
        note = f"PostgreSQL stopped (fast) for 3 s after {before} of {count} messages"
        settle(rig, ids, "restart-postgres")
    finally:
        fleet.stop_all()
        if not rig.postgres.started:
            rig.postgres.start()
    outcome = tally("restart-postgres", {"email": ids}, rig)
    outcome.notes.insert(0, note)
    return outcome


def drill_stop_redis(rig: Rig, count: int, outage: float) -> Outcome:
    lead, tail = 5.0, 5.0
    fleet = rig.fleet()
    note = "the broker was not stopped"
    ids: list[int] = []
    try:
        for n in range(rig.workers):
            fleet.worker(f"redis{n}")
        fleet.beat("beat")
        # due moments spread from now to after the broker is back: before, during and after the outage
        now = dt.datetime.now(dt.UTC)
        span = lead + outage + tail
        moments = [now + dt.timedelta(seconds=span * i / max(count - 1, 1)) for i in range(count)]
        ids = make_reminders("redis", moments)
        time.sleep(max(0.0, lead - (dt.datetime.now(dt.UTC) - now).total_seconds()))
        # the outage starts in the middle of sending, not before the first message (a slow start is no drill)
        wait_for(lambda: rig.smtp.total >= 1, rig.timeout, "the dispatch to get going", 0.05)
        before, down = rig.smtp.total, dt.datetime.now(dt.UTC)
        rig.redis.stop()
        time.sleep(outage)
        rig.redis.start()
        back = dt.datetime.now(dt.UTC)
        fell_due = sum(1 for m in moments if down < m <= back)
        note = f"broker down for {outage:.0f} s after {before} messages; {fell_due} reminders fell due meanwhile"
        settle(rig, ids, "stop-redis", timeout=rig.timeout + outage)
    finally:
        fleet.stop_all()
        if not rig.redis.alive():
            rig.redis.start()
    outcome = tally("stop-redis", {"email": ids}, rig)
    outcome.notes.insert(0, note)
    return outcome


def drill_two_beats(rig: Rig, count: int) -> Outcome:
    now = dt.datetime.now(dt.UTC)
    moments = [now + dt.timedelta(seconds=10 * i / max(count - 1, 1)) for i in range(count)]
    ids = make_reminders("beats", moments)
    fleet = rig.fleet()
    try:
        for n in range(rig.workers):
            fleet.worker(f"beats{n}")
        fleet.beat("beat1")
        fleet.beat("beat2")
        settle(rig, ids, "two-beats")
        time.sleep(3)  # a few more ticks of both beats: nothing is left to send, nothing goes
    finally:
        fleet.stop_all()
    return tally("two-beats", {"email": ids}, rig)


# --- setup and teardown -----------------------------------------------------------------------------------------
def _child_env(postgres: Postgres, redis_url: str, smtp_port: int, twilio_url: str, root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CELERY_", "EMAIL_", "CARTWATCH_", "DATABASE_", "DJANGO_SETTINGS", "TWILIO_"))
    }
    env.update(TwilioDouble.env(twilio_url))  # SMS through the SDK to the counting Twilio
    env.update(SHORT_SETTINGS)
    env.update(
        DATABASE_URL=postgres.url(),
        CELERY_BROKER_URL=redis_url,
        CELERY_TASK_DEFAULT_QUEUE="drills",
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}",
        CARTWATCH_VAR_DIR=str(root / "var"),
        DJANGO_ENV="development",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def _raise_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_drills() -> int:
    count = _env_int("BENCH_DRILL_REMINDERS", 10000)
    small = max(100, count // 5)
    outage = float(os.environ.get("BENCH_DRILL_OUTAGE_SECONDS", "") or 60)
    only = [n.strip() for n in os.environ.get("BENCH_DRILL_ONLY", "").split(",") if n.strip()]
    unknown = set(only) - set(DRILLS)
    if unknown:
        say(f"no such drill: {', '.join(sorted(unknown))} (have: {', '.join(DRILLS)})")
        return 2
    chosen = [n for n in DRILLS if not only or n in only]
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="cartwatch-drills-"))
    root.chmod(0o755)  # the postgres account must reach its directory inside
    say(f"working in {root}")
    postgres: Postgres | None = None
    redis: Redis | None = None
    controller = None
    twilio: TwilioDouble | None = None
    rig: Rig | None = None
    failed = 0
    try:
        from aiosmtpd.controller import Controller

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        smtp = SMTPCounter()
        controller = Controller(smtp, hostname="127.0.0.1", port=free_port())
        controller.start()
        twilio = TwilioDouble().start()

        started = time.monotonic()
        postgres = Postgres(root, DRILL_PG_SETTINGS)
        postgres.init()
        postgres.start()
        postgres.create_database()
        redis = Redis(root)
        redis.start()
        env = _child_env(postgres, redis.url, controller.port, twilio.url, root)
        _manage(env, "migrate", "--noinput")
        _manage(env, "load_seeds")
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "DJANGO_ENV", "CARTWATCH_VAR_DIR")})
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
        say(
            f"private PostgreSQL on :{postgres.port}, Redis on :{redis.port}, SMTP on :{controller.port}, "
            f"Twilio on {twilio.url} "
            f"(ready in {time.monotonic() - started:.0f}s); {_env_int('BENCH_DRILL_WORKERS', 2)} workers"
        )
        rig = Rig(
            root,
            postgres,
            redis,
            smtp,
            twilio,
            env,
            workers=max(2, _env_int("BENCH_DRILL_WORKERS", 2)),
            timeout=float(os.environ.get("BENCH_DRILL_TIMEOUT_SECONDS", "") or 120 + count * 0.1),
        )
        runs = {
            "kill-worker": lambda: drill_kill_worker(rig, count),
            "restart-postgres": lambda: drill_restart_postgres(rig, small),
            "stop-redis": lambda: drill_stop_redis(rig, small, outage),
            "two-beats": lambda: drill_two_beats(rig, small),
        }
        for name in chosen:
            smtp.reset()
            twilio.reset()
            began = time.monotonic()
            try:
                outcome = runs[name]()
            except Exception as exc:
                failed += 1
                say(f"drill {name}: error: {type(exc).__name__}: {exc}")
                continue
            for note in outcome.notes[:10] + outcome.problems:
                say(f"  {name}: {note}")
            say(f"  {name}: {time.monotonic() - began:.0f}s")
            for part in outcome.channels.values():
                say(part.line())
            say(outcome.line())
            say(outcome.verdict())
            failed += not outcome.ok
    finally:
        # a second Ctrl-C or SIGTERM must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for fleet in rig.fleets if rig else []:
            fleet.stop_all()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if redis:
            redis.stop()
        if postgres and postgres.data.exists():
            with contextlib.suppress(Exception):
                postgres.stop("immediate")
        if controller:
            with contextlib.suppress(Exception):
                controller.stop()
        if twilio:
            twilio.stop()
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return 1 if failed else 0


_LINE = re.compile(
    r"^drill (?P<name>\S+(?: \[\w+\])?): expected (?P<expected>\d+), sent (?P<sent>\d+), lost (?P<lost>\d+), "
    r"duplicated (?P<duplicated>\d+) \(flagged (?P<flagged>\d+)\), not attempted (?P<unattempted>\d+)$"
)


def main() -> int:
    """Run the drills in a fresh interpreter (Django there points at the drill's own database, nothing else here),
    echo what it prints and put each drill's line in the benchmarks' summary table."""
    if os.environ.get(CHILD_MARK):
        return run_drills()
    from bench import _common

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.drills"],
        cwd=REPO,
        env={**os.environ, CHILD_MARK: "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        for text in child.stdout:
            print(text, end="", flush=True)
            match = _LINE.match(text.strip())
            if match:
                n = {k: int(v) for k, v in match.groupdict().items() if k != "name"}
                ok = n["lost"] == 0 and n["unattempted"] == 0 and n["duplicated"] == n["flagged"]
                figure = f"sent {n['sent']}/{n['expected']}, lost {n['lost']}, doubled {n['duplicated']}"
                figure += f" ({n['flagged']} flagged)"
                if n["unattempted"]:
                    figure += f", {n['unattempted']} never attempted"
                _common.record(f"drill {match['name']}", figure, "-", "-", "0 lost, 0 unflagged", ok)
            elif text.startswith("drill ") and ": error:" in text:
                _common.record(text.split()[1].rstrip(":"), "ERROR (see above)", "-", "-", "-", False)
        return child.wait()
    except BaseException:
        if child.poll() is None:  # a Ctrl-C reached it too; SIGTERM says the same; both clean up and exit
            child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=120)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
