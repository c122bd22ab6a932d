"""The drills (``bench/drills.py``) run end to end at a small size: their own PostgreSQL cluster and Redis server,
real worker and beat processes, a worker killed every few seconds, a database restart, a broker outage and two
beats, and every drill reports nothing lost and nothing doubled without its flag."""

from __future__ import annotations

import base64
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import _twilio, drills
from tests.conftest import REPO, missing_service

LINE = re.compile(
    r"^drill (?P<name>\S+): expected (?P<expected>\d+), sent (?P<sent>\d+), lost (?P<lost>\d+), "
    r"duplicated (?P<duplicated>\d+) \(flagged (?P<flagged>\d+)\), not attempted (?P<unattempted>\d+)$",
    re.MULTILINE,
)
CHANNEL_LINE = re.compile(
    r"^drill (?P<name>\S+) \[(?P<channel>\w+)\]: expected (?P<expected>\d+), sent (?P<sent>\d+), lost (?P<lost>\d+), "
    r"duplicated (?P<duplicated>\d+) \(flagged (?P<flagged>\d+)\), not attempted (?P<unattempted>\d+)$",
    re.MULTILINE,
)


def test_an_outcome_fails_on_a_lost_or_an_unflagged_doubled_reminder():
    assert drills.Outcome("x", 10, sent=10, duplicated=2, flagged=2).ok
    assert not drills.Outcome("x", 10, sent=9, lost=1).ok
    assert not drills.Outcome("x", 10, sent=10, duplicated=2, flagged=1).ok
    assert not drills.Outcome("x", 10, sent=10, problems=["rows not sent"]).ok
    line = drills.Outcome("kill-worker", 10, sent=10, duplicated=1, flagged=1).line()
    assert line == "drill kill-worker: expected 10, sent 10, lost 0, duplicated 1 (flagged 1), not attempted 0"
    assert LINE.match(line)


def test_it_gives_one_verdict_per_drill_and_tells_a_slow_run_from_a_loss():
    assert drills.Outcome("x", 10, sent=10, duplicated=1, flagged=1).verdict() == "verdict x: PASS"
    assert drills.Outcome("x", 10, sent=9, lost=1).verdict() == "verdict x: FAIL: 1 lost"
    doubled = drills.Outcome("x", 10, sent=10, duplicated=2, flagged=1).verdict()
    assert doubled == "verdict x: FAIL: 1 doubled without the flag"
    slow = drills.Outcome("x", 10, sent=4, unattempted=6)
    assert not slow.ok
    assert slow.verdict() == "verdict x: INCOMPLETE: 6 reminders never taken up in the time allowed"


def test_it_counts_no_sms_for_a_request_its_killed_worker_never_finished():
    """A worker SIGKILLed while writing its request leaves a body shorter than its Content-Length: Twilio would
    not send that, so the drill's Twilio must not count it (it would be a message for no reminder)."""
    double = _twilio.TwilioDouble().start()
    try:
        host, port = double.server.server_address
        form = b"To=%2B15550000001&From=%2B15005550006&Body=Your+visit"
        auth = base64.b64encode(f"{_twilio.ACCOUNT_SID}:{_twilio.AUTH_TOKEN}".encode()).decode()
        head = (
            f"POST /2010-04-01/Accounts/{_twilio.ACCOUNT_SID}/Messages.json HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        )
        with socket.create_connection((host, port)) as cut:
            cut.sendall(f"{head}Content-Length: {len(form)}\r\n\r\n".encode() + form[:12])
        with socket.create_connection((host, port)) as whole:
            whole.sendall(f"{head}Content-Length: {len(form)}\r\n\r\n".encode() + form)
            assert whole.recv(4096).startswith(b"HTTP/1.1 201")
        time.sleep(0.2)  # the cut request's handler thread has read to the end of its connection
        assert [m["To"] for m in double.snapshot()] == ["+15550000001"]
    finally:
        double.stop()


def test_it_counts_each_channel_of_a_drill_in_its_verdict():
    email = drills.Outcome("kill-worker [email]", 8, sent=8, duplicated=1, flagged=1)
    sms = drills.Outcome("kill-worker [sms]", 2, sent=1, lost=1)
    outcome = drills.Outcome(
        "kill-worker", 10, sent=9, lost=1, duplicated=1, flagged=1, channels={"email": email, "sms": sms}
    )
    assert not outcome.ok
    assert outcome.verdict() == (
        "verdict kill-worker: FAIL: 1 lost (email: expected 8, sent 8, lost 0, duplicated 1 (flagged 1); "
        "sms: expected 2, sent 1, lost 1, duplicated 0 (flagged 0))"
    )
    assert CHANNEL_LINE.match(sms.line())["channel"] == "sms"
    assert not LINE.match(sms.line())  # a channel's line is not taken for a drill's


@pytest.mark.slow
@pytest.mark.services
def test_the_drills_run_at_a_small_size_and_lose_and_double_nothing():
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing_service("PostgreSQL server binaries (initdb) for the drills' own cluster")
    if not shutil.which("redis-server"):
        missing_service("redis-server binary for the drills' own broker")
    env = {**os.environ, "BENCH_DRILL_REMINDERS": "300", "BENCH_DRILL_OUTAGE_SECONDS": "5"}
    env.pop(drills.CHILD_MARK, None)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "drills"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    lines = {m["name"]: m for m in LINE.finditer(done.stdout)}
    assert set(lines) == set(drills.DRILLS), output
    assert done.returncode == 0, output
    assert int(lines["kill-worker"]["expected"]) == 300
    for m in lines.values():
        assert int(m["sent"]) == int(m["expected"]) > 0, output
        assert int(m["lost"]) == 0 and int(m["duplicated"]) == int(m["flagged"]), output
        assert int(m["unattempted"]) == 0, output
        assert f"verdict {m['name']}: PASS" in done.stdout, output
    assert "workers killed with SIGKILL" in done.stdout
    parts = {(m["name"], m["channel"]): m for m in CHANNEL_LINE.finditer(done.stdout)}
    assert set(parts) == {("kill-worker", "email"), ("kill-worker", "sms")}, output
    sms = parts["kill-worker", "sms"]
    assert int(sms["expected"]) == 75 and int(sms["sent"]) == 75, output  # a quarter of the kill drill by SMS
    assert int(sms["lost"]) == 0 and int(sms["duplicated"]) == int(sms["flagged"]), output
    assert int(parts["kill-worker", "email"]["expected"]) == 225, output
    workdir = re.search(r"^working in (\S+)$", done.stdout, re.MULTILINE)
    assert workdir and not Path(workdir[1]).exists(), "the drills left their directory behind"
