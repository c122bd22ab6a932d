"""The REST API under concurrent load on loopback, as production serves it: the image's web command, driven by ``wrk``.

The registry cohort of ``bench.admin_pages`` (``BENCH_API_PATIENTS``, default 100,000 patients at one centre, about
43 visits each: 4.3M visits, 1.7M reminders) is built with SQL in a scratch database. gunicorn serves it with the
image's web command unchanged (the Dockerfile's ``CMD``, which compose and ``bin/serve`` run too: its sync workers,
5 of them, one thread each, ``config/gunicorn.py``, and the access log on, written to a file here instead of a
terminal), persistent database connections and the rate limit counted in Redis (``CARTWATCH_CACHE_URL``, else the
broker's server) as in production. ``wrk`` runs ``BENCH_API_CLIENTS`` (default 20) concurrent connections for
``BENCH_API_SECONDS`` (default 8) seconds per run, three runs per request, with an API token in the Authorization
header, on the requests an EHR makes:

- the scheduled visits due in the next 14 days, 50 a page, following the ``next`` cursor of each answer to the end
  of the window and starting again (a Lua script keeps the cursor);
- a patient's schedule as a FHIR CarePlan bundle, for a different patient each time (among 1,000 of them).

Baseline, in the same run: the same gunicorn command serving a bare WSGI callable (``bench/_hello.py``): the floor
of the server and loopback. Figures are medians of the three runs, each printed with the load average beside it.
Beside each figure, the CPU time the web workers spent per request (from ``/proc``, over the three runs), and with
``BENCH_API_PROFILE=1`` the CPU time per request of each load through Django's handler in this process (no server,
no network: steadier than the workers' figure, the one to compare changes by) and where it goes (cProfile).
Target: p99 under 100 ms at 20 clients. ``wrk`` is Debian's package (``make bench`` installs it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from unittest import mock

from bench._common import (
    ROOT,
    backends_of,
    children_of,
    cpu_seconds,
    free_port,
    median,
    record,
    scratch_database,
)

TARGET_P99_MS = 100.0
#: Threads per worker by default: production's web command runs gunicorn's sync workers, one thread each.
THREADS = 1

#: Every script: the token, and the figures of the run printed as one JSON line when it ends.
LUA_COMMON = """
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "errors": %%d, "non2xx": %%d, "p50": %%f, "p90": %%f, "p99": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""

#: An EHR paging a window: each answer's ``next`` cursor is the next request, back to the first page at the end.
LUA_CURSOR = """
local first = "%(first)s"
local path = first
request = function()
  return wrk.format("GET", path)
end
response = function(status, headers, body)
  local following = body:match('"next":%%s*"([^"]+)"')
  if following and status == 200 then
    path = following:gsub("^https?://[^/]+", "")
  else
    path = first
  end
end
"""

#: One patient's CarePlan after another.
LUA_CAREPLAN = """
local ids = {%(ids)s}
local i = math.random(#ids)
request = function()
  i = i %% #ids + 1
  return wrk.format("GET", "/api/v1/patients/" .. ids[i] .. "/careplan")
end
"""


def production_web_options() -> list[str]:
    """The options of the image's web command (the Dockerfile's CMD, which compose and bin/serve run too)."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            command = json.loads(line.removeprefix("CMD "))
            return command[command.index("config.wsgi:application") + 1 :]
    raise RuntimeError("the Dockerfile has no CMD")


def gunicorn_args(app: str, port: int, workers: int, threads: int) -> list[str]:
    """Production's web command for ``app``, on a loopback port, with this run's workers and threads; its access
    log stays on (the caller sends it to a file)."""
    options = production_web_options()
    replaced = {"--bind": f"127.0.0.1:{port}", "--workers": str(workers)}
    args = [app]
    pairs = iter(options)
    for option in pairs:
        value = next(pairs)
        if option not in replaced:
            args += [option, value]
    for option in ("--bind", "--workers"):
        args += [option, replaced[option]]
    return [*args, "--threads", str(threads)]


def production_workers() -> int:
    """The image's web workers (its CMD's ``--workers``)."""
    options = production_web_options()
    return int(options[options.index("--workers") + 1])


def gunicorn(app: str, env: dict, workers: int, threads: int, log) -> tuple[subprocess.Popen, int]:
    """gunicorn with its access log (its standard output, as in production) written to ``log``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *gunicorn_args(app, port, workers, threads)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.PIPE,
    )
    return proc, port


def shared_cache_url() -> str:
    """The cache the rate limit counts in: ``CARTWATCH_CACHE_URL``, else the broker's Redis server as in compose."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    return os.environ.get("CARTWATCH_CACHE_URL") or (broker if broker.startswith("redis://") else "")


def server_settings() -> dict[str, str]:
    """The environment the server runs with, which this process takes too for its in-process figures."""
    return {
        "DATABASE_CONN_MAX_AGE": "60",  # as in production: one connection per worker thread, kept
        "CARTWATCH_CACHE_URL": shared_cache_url(),
        "CARTWATCH_API_RATE_TOKEN": "100000000/min",
    }


def wait_ready(url: str, headers: dict, proc: subprocess.Popen) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
                response.read()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk_runs(url: str, script: Path, clients: int, seconds: int, runs: int = 3, cpu=()) -> dict:
    """Median figures of ``runs`` wrk runs (after a short warm-up), each with the load average at its end; with
    ``cpu`` (name, pids function) pairs, the CPU milliseconds those processes spent per request over the runs."""
    threads = str(min(clients, max(1, os.cpu_count() or 1)))
    base = ["wrk", "-t", threads, "-c", str(clients), "-s", str(script), "--timeout", "10s"]
    subprocess.run([*base, "-d", "2s", url], check=True, capture_output=True)  # warm-up: connections, caches
    results, loads = [], []
    spent_before = {name: cpu_seconds(pids) for name, pids in cpu}
    for _ in range(runs):
        out = subprocess.run([*base, "-d", f"{seconds}s", url], check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        loads.append(os.getloadavg()[0])
    merged = {key: median([r[key] for r in results]) for key in ("p50", "p90", "p99")}
    merged["rps"] = median([r["requests"] / r["seconds"] for r in results])
    merged["errors"] = sum(r["errors"] + r["non2xx"] for r in results)
    merged["requests"] = sum(r["requests"] for r in results)
    merged["p99s"] = [r["p99"] for r in results]
    merged["loads"] = loads
    merged["cpu_ms"] = {
        name: 1000 * (cpu_seconds(pids) - spent_before[name]) / max(1, merged["requests"]) for name, pids in cpu
    }
    return merged


#: The ``next`` link of a visit page, as the wrk script finds it.
NEXT_LINK = re.compile(rb'"next":\s*"([^"]+)"')


def request_walks(first: str, careplan_ids: list[int]) -> dict:
    """The requests of each load, in this process: each function gives the path of the request after the answer
    it is handed (None for the first), as the wrk scripts choose them."""

    def visit_page(answer) -> str:
        found = answer is not None and NEXT_LINK.search(answer.content)
        return re.sub(r"^https?://[^/]+", "", found.group(1).decode()) if found else first

    careplans = iter(range(10**9))
    return {
        "visit list": visit_page,
        "patient careplan": lambda _answer: (
            f"/api/v1/patients/{careplan_ids[next(careplans) % len(careplan_ids)]}/careplan"
        ),
    }


def profile_requests(first: str, careplan_ids: list[int], token: str, repeats: int = 100) -> None:
    """Where a request's time goes, through Django's handler in this process (no server, no network, no access
    log): the CPU time per request of each load (the median of five rounds of ``repeats``, with the load average),
    then a profile of ``repeats`` requests of each."""
    import cProfile

    from django.test import Client
    from django.test.client import ClientHandler
    from django.test.utils import setup_test_environment

    from bench._common import print_profile
    from surveillance.api.token_requests import TokenChainMixin

    class TokenChainClientHandler(TokenChainMixin, ClientHandler):
        """The middleware chain the web role serves token requests with."""

    setup_test_environment()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.handler = TokenChainClientHandler()
    walks = request_walks(first, careplan_ids)

    def walk(name: str, count: int) -> None:
        answer = None
        for _ in range(count):
            answer = client.get(walks[name](answer))
            assert answer.status_code == 200, (name, answer.status_code)

    for name in walks:
        walk(name, 20)  # warm-up: connections, caches, the process's one-time work
        rounds = []
        for _ in range(5):
            started = time.process_time()
            walk(name, repeats)
            rounds.append(1000 * (time.process_time() - started) / repeats)
        print(
            f"  {name:17s} in process: CPU per request {median(rounds):.2f} ms "
            f"(median of 5 x {repeats}: {', '.join(f'{ms:.2f}' for ms in rounds)}; load {os.getloadavg()[0]:.2f})"
        )
    profiler = cProfile.Profile()
    profiler.enable()
    for name in walks:
        walk(name, repeats)
    profiler.disable()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "api.prof"
        profiler.dump_stats(out)
        print_profile(out)


def main() -> int:
    if shutil.which("wrk") is None:
        print("api_load: skipped (wrk is not installed: apt-get install wrk, or run make bench)")
        record("API load", "skipped (no wrk)", "-", "-", f"p99 < {TARGET_P99_MS:.0f} ms", None)
        return 1
    patients = int(os.environ.get("BENCH_API_PATIENTS", "100000"))
    clients = int(os.environ.get("BENCH_API_CLIENTS", "20"))
    seconds = int(os.environ.get("BENCH_API_SECONDS", "8"))
    workers = int(os.environ.get("BENCH_API_WORKERS", str(production_workers())))
    threads = int(os.environ.get("BENCH_API_THREADS", str(THREADS)))
    from bench.admin_pages import build

    # This process serves the in-process figures of BENCH_API_PROFILE=1 as the server serves the load: the rate limit
    # and the tokens in Redis, persistent connections, and an allowance no run reaches; for this benchmark alone
    # (``make bench`` starts the next ones' servers from this process's environment).
    with mock.patch.dict(os.environ, server_settings()), scratch_database("api") as db_url:
        from django.db import connection

        from surveillance.api.auth import api_token_create
        from surveillance.models import FollowUpVisit, Patient, TreatmentCentre

        if connection.vendor != "postgresql":
            print("api_load: skipped (needs PostgreSQL: set DATABASE_URL)")
            record("API load", "skipped (no PostgreSQL)", "-", "-", "-", None)
            return 0
        build(patients)
        centre = TreatmentCentre.objects.get(code="registry")
        token = api_token_create("bench-load", [centre])[1]
        ids = list(Patient.objects.filter(centre=centre).order_by("?").values_list("pk", flat=True)[:1000])
        today = dt.date.today()
        window = (today, today + dt.timedelta(days=13))
        in_window = FollowUpVisit.objects.filter(status="scheduled", due_date__range=window).count()
        first = f"/api/v1/visits?status=scheduled&due_after={window[0]}&due_before={window[1]}&page_size=50"
        print(f"{in_window} scheduled visits due in the next 14 days: {-(-in_window // 50)} pages of 50")
        connection.close()
        env = {**os.environ, "DATABASE_URL": db_url}
        database = db_url.rsplit("/", 1)[1]
        requests = {
            "visit list": (first, LUA_CURSOR % {"first": first}),
            "patient careplan": (
                f"/api/v1/patients/{ids[0]}/careplan",
                LUA_CAREPLAN % {"ids": ",".join(map(str, ids))},
            ),
        }
        figures: dict[str, dict] = {}
        single: dict[str, dict] = {}
        with tempfile.TemporaryDirectory() as folder, (Path(folder) / "access.log").open("wb") as access_log:
            scripts = {}
            for name, (_path, lua) in {"bare WSGI": ("/", ""), **requests}.items():
                scripts[name] = Path(folder) / f"{name.replace(' ', '_')}.lua"
                scripts[name].write_text(LUA_COMMON % {"token": token} + lua)
            hello, hello_port = gunicorn("bench._hello:application", env, workers, threads, access_log)
            try:
                wait_ready(f"http://127.0.0.1:{hello_port}/", {}, hello)
                figures["bare WSGI"] = wrk_runs(
                    f"http://127.0.0.1:{hello_port}/",
                    scripts["bare WSGI"],
                    clients,
                    seconds,
                    cpu=[("web", children_of(hello.pid))],
                )
            finally:
                stop(hello)
            server, port = gunicorn("config.wsgi:application", env, workers, threads, access_log)
            cpu = [("web", children_of(server.pid)), ("PostgreSQL", backends_of(database))]
            try:
                headers = {"Authorization": f"Bearer {token}"}
                wait_ready(f"http://127.0.0.1:{port}{first}", headers, server)
                for name, (path, _lua) in requests.items():
                    url = f"http://127.0.0.1:{port}{path}"
                    figures[name] = wrk_runs(url, scripts[name], clients, seconds, cpu=cpu)
                    # the service time of one request, without queueing: one client, one run
                    single[name] = wrk_runs(url, scripts[name], 1, max(2, seconds // 2), runs=1)
            finally:
                stop(server)
            access_lines = (Path(folder) / "access.log").read_bytes().count(b"\n")
        if os.environ.get("BENCH_API_PROFILE"):
            profile_requests(first, ids, token)
    base = figures["bare WSGI"]
    cache = "Redis" if env["CARTWATCH_CACHE_URL"] else "per-process memory"
    print(
        f"gunicorn (the image's command): {workers} workers x {threads} threads, access log on ({access_lines} lines), "
        f"rate limit counted in {cache}; wrk: {clients} connections, 3 runs of {seconds} s per request; "
        f"{os.cpu_count()} CPUs shared by wrk, gunicorn and PostgreSQL"
    )
    ok = True
    for name, f in figures.items():
        spent = ", ".join(f"{who} {ms:.2f} ms" for who, ms in f["cpu_ms"].items())
        print(
            f"  {name:17s} {f['rps']:8.0f} req/s  p50 {f['p50']:7.1f} ms  p90 {f['p90']:7.1f} ms  "
            f"p99 {f['p99']:7.1f} ms  ({f['requests']} requests, {f['errors']} errors or non-2xx)"
        )
        print(
            "  "
            + " " * 17
            + " runs' p99 "
            + ", ".join(f"{p99:.1f} ms (load {load:.2f})" for p99, load in zip(f["p99s"], f["loads"], strict=True))
            + f"; CPU per request: {spent}"
        )
    for name, f in single.items():
        print(f"  {name:17s} alone (1 client): {f['rps']:6.0f} req/s  p50 {f['p50']:6.1f} ms  p99 {f['p99']:6.1f} ms")
    for name in requests:
        f = figures[name]
        met = f["p99"] < TARGET_P99_MS and f["errors"] == 0
        ok = ok and met
        spent = " + ".join(f"{who} {ms:.1f} ms" for who, ms in f["cpu_ms"].items())
        record(
            f"API {name}, {patients:,} patients, {clients} clients (median of 3)",
            f"{f['rps']:.0f} req/s; p50 {f['p50']:.1f} ms; p99 {f['p99']:.1f} ms; CPU/request {spent}; "
            f"load {median(f['loads']):.1f}",
            f"bare WSGI p99 {base['p99']:.1f} ms",
            f"{f['p99'] / base['p99']:.0f}x",
            f"p99 < {TARGET_P99_MS:.0f} ms",
            met,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
