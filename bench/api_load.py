"""The REST API under concurrent load on loopback: gunicorn on the configured database, driven by ``wrk``.

A cohort of ``BENCH_API_VISITS`` (default 300,000) visits, 30 per patient, is built with SQL in a scratch database
(as ``bench.sweep`` builds its cohort). gunicorn serves it with the production web command (the Dockerfile's
``CMD``, which compose and ``bin/serve`` run too: sync workers, one thread each), with ``BENCH_API_WORKERS`` workers
(default 2 x CPUs + 1) and ``BENCH_API_THREADS`` threads (default 1), persistent database connections and the rate
limit counted in Redis (``CARTWATCH_CACHE_URL``, else the broker's server) as in production. ``wrk`` runs
``BENCH_API_CLIENTS`` (default 20) concurrent connections for ``BENCH_API_SECONDS`` (default 8) seconds per run,
three runs per URL, with an API token in the Authorization header (a Lua script, which also prints the latency
percentiles):

- ``GET /api/v1/visits?status=scheduled&page_size=50`` (the visit list an integration pages through);
- ``GET /api/v1/patients/{id}/careplan`` (one patient's schedule as a FHIR CarePlan bundle).

Baseline, in the same run: the same gunicorn settings serving a bare WSGI callable (``bench/_hello.py``): the floor
of the server and loopback. Figures are medians of the three runs. Target: p99 under 100 ms at 20 clients.
``wrk`` is Debian's package (``make bench`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench._common import ROOT, median, record, scratch_database

TARGET_P99_MS = 100.0
#: Threads per worker by default: production's web command runs gunicorn's sync workers, one thread each.
THREADS = 1

LUA = """
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "errors": %%d, "non2xx": %%d, "p50": %%f, "p90": %%f, "p99": %%f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def production_web_options() -> list[str]:
    """The options of the image's web command (the Dockerfile's CMD, which compose and bin/serve run too)."""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            command = json.loads(line.removeprefix("CMD "))
            return command[command.index("config.wsgi:application") + 1 :]
    raise RuntimeError("the Dockerfile has no CMD")


def gunicorn_args(app: str, port: int, workers: int, threads: int) -> list[str]:
    """Production's web command for ``app``, on a loopback port, with this run's workers and threads.

    Its access log is left out: the production one writes a line per request to a terminal nobody reads here.
    """
    options = production_web_options()
    replaced = {"--bind": f"127.0.0.1:{port}", "--workers": str(workers), "--access-logfile": None}
    args = [app]
    pairs = iter(options)
    for option in pairs:
        value = next(pairs)
        if option not in replaced:
            args += [option, value]
    for option in ("--bind", "--workers"):
        args += [option, replaced[option]]
    return [*args, "--threads", str(threads), "--log-level", "warning"]


def gunicorn(app: str, env: dict, workers: int, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *gunicorn_args(app, port, workers, threads)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, port


def shared_cache_url() -> str:
    """The cache the rate limit counts in: ``CARTWATCH_CACHE_URL``, else the broker's Redis server as in compose."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    return os.environ.get("CARTWATCH_CACHE_URL") or (broker if broker.startswith("redis://") else "")


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


def wrk_runs(url: str, script: Path, clients: int, seconds: int, runs: int = 3) -> dict:
    """Median figures of ``runs`` wrk runs (after a short warm-up)."""
    threads = str(min(clients, max(1, os.cpu_count() or 1)))
    base = ["wrk", "-t", threads, "-c", str(clients), "-s", str(script), "--timeout", "10s"]
    subprocess.run([*base, "-d", "2s", url], check=True, capture_output=True)  # warm-up: connections, caches
    results = []
    for _ in range(runs):
        out = subprocess.run([*base, "-d", f"{seconds}s", url], check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    merged = {key: median([r[key] for r in results]) for key in ("p50", "p90", "p99")}
    merged["rps"] = median([r["requests"] / r["seconds"] for r in results])
    merged["errors"] = sum(r["errors"] + r["non2xx"] for r in results)
    merged["requests"] = sum(r["requests"] for r in results)
    return merged


def main() -> int:
    if shutil.which("wrk") is None:
        print("api_load: skipped (wrk is not installed: apt-get install wrk, or run make bench)")
        record("API load", "skipped (no wrk)", "-", "-", f"p99 < {TARGET_P99_MS:.0f} ms", None)
        return 1
    visits = int(os.environ.get("BENCH_API_VISITS", "300000"))
    clients = int(os.environ.get("BENCH_API_CLIENTS", "20"))
    seconds = int(os.environ.get("BENCH_API_SECONDS", "8"))
    workers = int(os.environ.get("BENCH_API_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
    threads = int(os.environ.get("BENCH_API_THREADS", str(THREADS)))
    from bench.sweep import build

    with scratch_database("api") as db_url:
        from django.db import connection

        from surveillance.api.auth import api_token_create
        from surveillance.models import Patient, TreatmentCentre

        if connection.vendor != "postgresql":
            print("api_load: skipped (needs PostgreSQL: set DATABASE_URL)")
            record("API load", "skipped (no PostgreSQL)", "-", "-", "-", None)
            return 0
        build(visits, backlog_days=30, unrecorded=0.3)
        centre = TreatmentCentre.objects.get(code="ny")
        token = api_token_create("bench-load", [centre])[1]
        patient = Patient.objects.filter(centre=centre).order_by("pk").first()
        connection.close()
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "DATABASE_CONN_MAX_AGE": "60",  # as in production: one connection per worker thread, kept
            "CARTWATCH_CACHE_URL": shared_cache_url(),
            "CARTWATCH_API_RATE_TOKEN": "100000000/min",
        }
        paths = {
            "visit list": "/api/v1/visits?status=scheduled&page_size=50",
            "patient careplan": f"/api/v1/patients/{patient.pk}/careplan",
        }
        figures: dict[str, dict] = {}
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "auth.lua"
            script.write_text(LUA % {"token": token})
            hello, hello_port = gunicorn("bench._hello:application", env, workers, threads)
            try:
                wait_ready(f"http://127.0.0.1:{hello_port}/", {}, hello)
                figures["bare WSGI"] = wrk_runs(f"http://127.0.0.1:{hello_port}/", script, clients, seconds)
            finally:
                stop(hello)
            server, port = gunicorn("config.wsgi:application", env, workers, threads)
            try:
                headers = {"Authorization": f"Bearer {token}"}
                wait_ready(f"http://127.0.0.1:{port}{paths['visit list']}", headers, server)
                for name, path in paths.items():
                    figures[name] = wrk_runs(f"http://127.0.0.1:{port}{path}", script, clients, seconds)
                # the service time of one request, without queueing: one client, one run
                single = {
                    name: wrk_runs(f"http://127.0.0.1:{port}{path}", script, 1, max(2, seconds // 2), runs=1)
                    for name, path in paths.items()
                }
            finally:
                stop(server)
    base = figures["bare WSGI"]
    cache = "Redis" if env["CARTWATCH_CACHE_URL"] else "per-process memory"
    print(
        f"gunicorn: {workers} workers x {threads} threads, rate limit counted in {cache}; "
        f"wrk: {clients} connections, 3 runs of {seconds} s per URL"
    )
    ok = True
    for name, f in figures.items():
        print(
            f"  {name:17s} {f['rps']:8.0f} req/s  p50 {f['p50']:7.1f} ms  p90 {f['p90']:7.1f} ms  "
            f"p99 {f['p99']:7.1f} ms  ({f['requests']} requests, {f['errors']} errors or non-2xx)"
        )
    for name, f in single.items():
        print(f"  {name:17s} alone (1 client): {f['rps']:6.0f} req/s  p50 {f['p50']:6.1f} ms  p99 {f['p99']:6.1f} ms")
    for name in paths:
        f = figures[name]
        met = f["p99"] < TARGET_P99_MS and f["errors"] == 0
        ok = ok and met
        record(
            f"API {name}, {clients} clients (median of 3)",
            f"{f['rps']:.0f} req/s; p50 {f['p50']:.1f} ms; p99 {f['p99']:.1f} ms",
            f"bare WSGI p99 {base['p99']:.1f} ms",
            f"{f['p99'] / base['p99']:.0f}x",
            f"p99 < {TARGET_P99_MS:.0f} ms",
            met,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
