"""SMS dispatch throughput: the dispatcher against the provider's round trip alone.

A loopback HTTP server speaking Twilio's Messages endpoint (``bench._twilio``, the double the tests use, in a
process of its own) takes ``BENCH_SMS_MESSAGES`` (2,000) due SMS reminders, sent by ``DISPATCH_PARALLEL``
dispatcher processes at once through the Twilio backend (the official SDK, pointed at the double with
``TWILIO_API_URL``): claim, re-check, hand-off markers, outcomes, all of it. Beside it, in the same run, the raw
rate: the same form bodies POSTed to the same endpoint by a bare loop over one keep-alive ``requests`` session (the
HTTP library the SDK sends with), just before and just after each dispatch (the mean of the two). Medians of
``BENCH_SMS_RUNS`` (3) runs, each printed with the load average (the machine is shared). Target: dispatch at least
0.8 of raw.

``BENCH_SMS_PROFILE=1`` also drains one more batch of reminders in this process, with one dispatcher, under
cProfile, and prints where its time goes. It works in a scratch database of its own, dropped at the end.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

MESSAGES_PATH = "/2010-04-01/Accounts/{sid}/Messages.json"


def _serve(urls, stop) -> None:
    from bench._twilio import TwilioDouble

    double = TwilioDouble().start()
    urls.put(double.url)
    stop.wait()
    double.stop()


def twilio_server() -> tuple[multiprocessing.Process, multiprocessing.Event, str]:
    """The loopback Twilio in a process of its own (the clients' work never competes with it for a GIL)."""
    ctx = multiprocessing.get_context("spawn")
    urls, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(urls, stop), daemon=True)
    proc.start()
    return proc, stop, urls.get(timeout=30)


def twilio_settings(url: str) -> dict:
    """The Django settings that send SMS through the SDK to the double at ``url``."""
    from bench import _twilio

    return {
        "CARTWATCH_SMS_BACKEND": "surveillance.reminders.sms_backends.TwilioSmsBackend",
        "TWILIO_ACCOUNT_SID": _twilio.ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": _twilio.AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": _twilio.FROM_NUMBER,
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "TWILIO_API_URL": url,
        "SMS_TIMEOUT": 15,
    }


def form_bodies() -> list[dict[str, str]]:
    """The form fields the SDK sends for each pending SMS reminder (To, From, Body, StatusCallback)."""
    from django.conf import settings
    from django.utils import timezone

    from surveillance.models import Reminder, ReminderStatus
    from surveillance.reminders.sms import SmsTransport

    transport, now = SmsTransport(), timezone.now()
    bodies = []
    for reminder in Reminder.objects.filter(status=ReminderStatus.PENDING, channel="sms").select_related(
        "visit__infusion__patient__centre"
    ):
        message = transport.build(reminder, now)
        bodies.append(
            {
                "To": message.to,
                "From": settings.TWILIO_FROM_NUMBER,
                "Body": message.body,
                "StatusCallback": message.status_callback,
            }
        )
    return bodies


def raw_rate(url: str, bodies: list[dict[str, str]]) -> float:
    """POST every body over one keep-alive session, reading each answer; messages per second."""
    import requests

    from bench import _twilio

    endpoint = url + MESSAGES_PATH.format(sid=_twilio.ACCOUNT_SID)
    with requests.Session() as session:
        session.auth = (_twilio.ACCOUNT_SID, _twilio.AUTH_TOKEN)
        session.trust_env = False  # no proxy lookup per request: the round trip and the library's least work
        session.headers["Accept"] = "application/json"
        session.post(endpoint, data=bodies[0], timeout=15).raise_for_status()  # connect outside the timing
        started = time.perf_counter()
        for body in bodies:
            answer = session.post(endpoint, data=body, timeout=15)
            if answer.status_code != 201:
                raise RuntimeError(f"the double answered {answer.status_code}")
            answer.json()
        return len(bodies) / (time.perf_counter() - started)


def profile_dispatch(n: int) -> None:
    """One dispatcher in this process, under cProfile, over ``n`` fresh reminders."""
    from bench._common import print_profile
    from bench.dispatch import _fixtures
    from surveillance.reminders import dispatch

    _fixtures(n, tag="sms-profile", channel="sms")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = dispatch.dispatch_run(budget_seconds=3600)
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"profiled: {result.sent} SMS by one dispatcher in {elapsed:.2f}s ({result.sent / elapsed:.0f} msg/s)")
    path = Path(tempfile.mkdtemp()) / "sms_dispatch.prof"
    profiler.dump_stats(path)
    print_profile(path)


def throughput(n: int, runs: int) -> bool:
    from django.conf import settings

    from bench._common import median, record
    from bench.dispatch import _fixtures, apply_settings, parallel_dispatch, rate_ratio

    processes = settings.CARTWATCH["DISPATCH_PARALLEL"]
    server, stop, url = twilio_server()
    overrides = twilio_settings(url)
    raws, rates = [], []
    try:
        apply_settings(overrides)
        for run in range(runs):
            _fixtures(n, tag=f"sms{run}", channel="sms")
            bodies = form_bodies()
            assert len(bodies) == n, len(bodies)
            raw_before = raw_rate(url, bodies)
            sent, elapsed = parallel_dispatch(overrides, processes)
            assert sent == n, sent
            rates.append(n / elapsed)
            # the loopback rate swings with where the scheduler puts client and server: measured on both sides
            raws.append((raw_before + raw_rate(url, bodies)) / 2)
            # the machine is shared: how busy it was belongs beside each figure
            load = " ".join(f"{n:.2f}" for n in os.getloadavg())
            print(f"run {run + 1}: dispatch {rates[-1]:.0f} msg/s, raw {raws[-1]:.0f} msg/s, load average {load}")
        if os.environ.get("BENCH_SMS_PROFILE") == "1":
            profile_dispatch(n)
    finally:
        stop.set()
        server.join(timeout=10)
    raw, rate = median(raws), median(rates)
    batch, group = settings.CARTWATCH["REMINDER_BATCH_SIZE"], settings.CARTWATCH["REMINDER_COMMIT_EVERY"]
    print(f"SMS: {n} per run, batch size {batch}, a commit every {group} messages")
    print(f"raw requests, one keep-alive connection: {raw:8.1f} msg/s (median of {runs})")
    print(f"dispatch through the SDK, {processes} dispatcher(s):  {rate:8.1f} msg/s")
    ratio = rate_ratio(rates, raws)
    record(
        f"SMS dispatch to loopback Twilio, {processes} dispatchers (median of {runs})",
        f"{rate:.0f} msg/s",
        f"raw requests {raw:.0f} msg/s",
        f"{ratio:.2f}",
        ">= 0.80",
        ratio >= 0.8,
    )
    return ratio >= 0.8


def main() -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.test import override_settings

    from bench._common import scratch_database

    # This benchmark's own batch size, for it alone: ``make bench`` runs the next ones in this process.
    batch = {**settings.CARTWATCH, "REMINDER_BATCH_SIZE": int(os.environ.get("BENCH_BATCH", "100"))}
    with scratch_database("sms"), override_settings(CARTWATCH=batch):
        ok = throughput(int(os.environ.get("BENCH_SMS_MESSAGES", "2000")), int(os.environ.get("BENCH_SMS_RUNS", "3")))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
