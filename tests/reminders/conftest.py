"""Fixtures of the reminder engine's tests: a real SMTP server on loopback that can be told how to answer, real
Celery worker and beat processes on a Redis broker, and visits with reminders due now."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email
import email.policy
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from surveillance.models import FollowUpVisit, Protocol, Reminder
from surveillance.models.reminders import Audience, Purpose
from tests.conftest import REPO, missing_service
from tests.ports import free_port

UTC = dt.UTC
logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command (and addresses)


def wait_until(condition, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


# --- SMTP -------------------------------------------------------------------------------------------------------
class SMTPRecorder:
    """An aiosmtpd handler that keeps what it accepts and answers as told.

    ``answers``: a queue of replies to DATA ("451 ...", "550 ..."); when empty, the message is accepted.
    ``ehlo_gate``/``accept_gate``: cleared, the server stalls at EHLO (before any message is handed over) or
    after it has stored an accepted message but before it says 250 (the message is delivered, the client does
    not know it yet); ``hold_from``: the first message the accept gate holds (those before it go through).
    ``mail_gate``: cleared, the server stalls at the ``hold_mail_from``-th MAIL FROM, before answering it (the
    messages before it are delivered and answered, the next is not handed over yet).
    """

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], float]] = []
        self.answers: deque[str] = deque()
        self.ehlo_gate = threading.Event()
        self.accept_gate = threading.Event()
        self.ehlo_gate.set()
        self.accept_gate.set()
        self.stalled_at_ehlo = threading.Event()
        self.stalled_after_accept = threading.Event()
        self.mail_gate = threading.Event()
        self.mail_gate.set()
        self.stalled_at_mail = threading.Event()
        self.mail_commands = 0
        self.hold_mail_from = 1
        self.data_commands = 0
        self.hold_from = 1
        self.delay = 0.0  # seconds the server takes over each message, to make concurrent senders overlap
        self._lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        while not self.ehlo_gate.is_set():
            self.stalled_at_ehlo.set()
            await asyncio.sleep(0.05)
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self._lock:
            self.mail_commands += 1
            held = self.mail_commands >= self.hold_mail_from
        while held and not self.mail_gate.is_set():
            self.stalled_at_mail.set()
            await asyncio.sleep(0.05)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.data_commands += 1
            answer = self.answers.popleft() if self.answers else None
        if answer is not None:
            return answer
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), time.time()))
            held = len(self.messages) >= self.hold_from
        while held and not self.accept_gate.is_set():
            self.stalled_after_accept.set()
            await asyncio.sleep(0.05)
        return "250 2.0.0 Message accepted for delivery"

    def message_ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.messages]

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


@contextlib.contextmanager
def loopback_smtp(handler):
    """A real SMTP server (aiosmtpd) on a free loopback port, answering with ``handler``; its port is set on it."""
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def smtp_server():
    handler = SMTPRecorder()
    with loopback_smtp(handler):
        handler.url = f"smtp://127.0.0.1:{handler.port}"
        try:
            yield handler
        finally:
            handler.ehlo_gate.set()
            handler.accept_gate.set()
            handler.mail_gate.set()


@pytest.fixture
def smtp_settings(settings, smtp_server):
    """In-process dispatch sends to the loopback server, as production sends to its relay."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    return smtp_server


# --- SMS ------------------------------------------------------------------------------------------------------
@pytest.fixture
def twilio_server():
    from bench._twilio import TwilioDouble

    server = TwilioDouble().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def twilio_settings(settings, twilio_server):
    """This process sends SMS through the SDK to the loopback Twilio, and checks webhooks with its token."""
    from bench import _twilio as twilio_double

    settings.CARTWATCH_SMS_BACKEND = "surveillance.reminders.sms_backends.TwilioSmsBackend"
    settings.TWILIO_ACCOUNT_SID = twilio_double.ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = twilio_double.AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = twilio_double.FROM_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_URL = twilio_server.url
    settings.SMS_TIMEOUT = 5
    return twilio_server


# --- visits with reminders --------------------------------------------------------------------------------------
@pytest.fixture
def open_visit(make_infusion):
    """A scheduled visit whose window is open on ``today`` (built directly, whatever the protocol says)."""

    def make(patient, today: dt.date, occurrence: int = 900) -> FollowUpVisit:
        protocol = Protocol.objects.current("standard")
        infusion = make_infusion(patient, infusion_date=today - dt.timedelta(days=400), protocol=protocol)
        rule = protocol.rules.order_by("position").last()
        return FollowUpVisit.objects.create(
            infusion=infusion,
            rule=rule,
            rule_code=rule.code,
            occurrence=occurrence,
            label=rule.label,
            kind=rule.kind,
            due_date=today + dt.timedelta(days=5),
            window_start=today - dt.timedelta(days=10),
            window_end=today + dt.timedelta(days=20),
            assessments=[],
            reminders_planned_for=0,
        )

    return make


def add_reminder(
    visit: FollowUpVisit,
    at: dt.datetime,
    *,
    audience: str = Audience.PATIENT,
    purpose: str = Purpose.UPCOMING,
    days_before: int = 2,
    channel: str = "email",
) -> Reminder:
    from surveillance.reminders.outbox import reminder_key

    return Reminder.objects.create(
        visit=visit,
        audience=audience,
        purpose=purpose,
        days_before=days_before,
        channel=channel,
        idempotency_key=reminder_key(visit, audience, purpose, days_before),
        sequence=visit.sequence,
        send_after=at,
        next_attempt_at=at,
    )


# --- real worker processes --------------------------------------------------------------------------------------
def redis_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else "redis://127.0.0.1:6379/3"


def redis_alive(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def database_url() -> str:
    """The test database, as a URL worker processes can open (PostgreSQL only: SQLite's test DB is in memory)."""
    if connection.vendor != "postgresql":
        missing_service("worker-process tests need PostgreSQL (set DATABASE_URL)")
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def live_db(transactional_db):
    """Committed data that worker processes can see."""
    return database_url()


class Processes:
    """Starts ``celery -A config worker`` / ``beat`` processes against the live test database and stops them."""

    def __init__(self, tmp_path: Path, db_url: str, broker: str) -> None:
        self.tmp_path = tmp_path
        self.queue = f"cartwatch-test-{uuid.uuid4().hex[:8]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "EMAIL_"))}
        self.env.update(
            DATABASE_URL=db_url,
            CELERY_BROKER_URL=broker,
            CELERY_TASK_DEFAULT_QUEUE=self.queue,
            CARTWATCH_VAR_DIR=str(tmp_path),
            PYTHONUNBUFFERED="1",
            DJANGO_ENV="development",
        )
        self.procs: list[subprocess.Popen] = []

    def _start(self, args: list[str], name: str, env: dict) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=REPO,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = self.tmp_path / f"{name}.log"
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "w1", **env: str) -> subprocess.Popen:
        proc = self._start(
            [
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "-n",
                f"{name}-{self.queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            name,
            env,
        )
        wait_until(lambda: "ready." in proc.log_path.read_text() or proc.poll() is not None, 60, message="worker")
        assert proc.poll() is None, proc.log_path.read_text()
        return proc

    def beat(self, name: str = "beat", **env: str) -> subprocess.Popen:
        return self._start(["beat", "--loglevel=INFO", f"--schedule={self.tmp_path / (name + '-schedule')}"], name, env)

    def send(
        self, task: str = "surveillance.reminders.tasks.dispatch_due_reminders", broker: str | None = None
    ) -> None:
        from celery import Celery

        app = Celery("probe", broker=broker or self.env["CELERY_BROKER_URL"])
        try:
            app.send_task(task, queue=self.queue)
        finally:
            app.close()

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc, signal.SIGTERM)


@pytest.fixture
def broker():
    url = redis_url()
    if not redis_alive(url):
        missing_service(f"Redis at {url.rsplit('/', 1)[0]}")
    return url


@pytest.fixture
def processes(live_db, broker, tmp_path):
    procs = Processes(tmp_path, live_db, broker)
    try:
        yield procs
    finally:
        procs.stop()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of the test's own, which it may stop and flush without touching anyone else's."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            try:
                self.proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            except FileNotFoundError:
                missing_service("redis-server binary")
            wait_until(lambda: redis_alive(self.url), 10, message="private redis")

        def stop(self) -> None:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)

    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
