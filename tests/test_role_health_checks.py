"""Every role's health check in docker-compose.yml passes against the production settings, with no container.

Each role's command runs here as compose starts it, with the environment compose gives it (this test run's
database and broker in place of the compose network's), and its health check runs as compose runs it. The TLS
front is Debian's Caddy with the shipped Caddyfile, pointed at a web role on a loopback port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.conftest import REPO, missing_service
from tests.ports import free_port
from tests.test_deployment import (  # noqa: F401
    compose_config,
    compose_role,
    compose_secret,
    compose_web,
    production_web,
)

CADDYFILE = REPO / "config" / "Caddyfile"

needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL"
)


@needs_postgres
def test_it_passes_the_web_health_check_with_the_compose_defaults(compose_web, tmp_path):  # noqa: F811
    port = free_port()
    with production_web(compose_web, port, tmp_path / "web.log"):
        kind, *check = compose_web["healthcheck"]
        assert kind == "CMD" and check[0] == "python"
        script = check[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:] + (tmp_path / "web.log").read_text()[-1500:]


@pytest.fixture
def compose_worker(compose_config, django_db_setup, tmp_path):  # noqa: F811
    """The worker role as compose configures it, on a host name of its own (a container's is unique too)."""
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        missing_service("the worker's health check needs Redis: set CELERY_BROKER_URL=redis://...")
    worker = compose_role(compose_config, "worker", tmp_path)
    hostname = f"cartwatch-worker-{uuid.uuid4().hex[:8]}"
    worker["env"].update(
        HOSTNAME=hostname,  # what the container's shell has
        PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",  # `celery` is this virtualenv's
        CELERY_TASK_DEFAULT_QUEUE=f"role-health-{hostname}",  # takes no task another test enqueued
    )
    worker["nodename"] = f"celery@{hostname}"
    return worker


@contextlib.contextmanager
def production_worker(worker: dict, log_path):
    """The compose file's worker command, named as in a container whose host name is ``$HOSTNAME``, until ready."""
    command = [sys.executable, "-m", "celery", *worker["command"][1:], f"--hostname={worker['nodename']}"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=worker["env"], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while f"{worker['nodename']} ready." not in log_path.read_text():
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the worker did not get ready: " + log_path.read_text()[-2000:])
                time.sleep(0.2)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=60)


def _shell_check(role: dict) -> subprocess.CompletedProcess:
    """A ``CMD-SHELL`` health check run by ``sh`` in the role's environment; ``$$`` is compose's escaped ``$``."""
    kind, script = role["healthcheck"]
    assert kind == "CMD-SHELL"
    return subprocess.run(
        ["sh", "-c", script.replace("$$", "$")], cwd=REPO, env=role["env"], capture_output=True, text=True, timeout=90
    )


@needs_postgres
def test_it_passes_the_worker_health_check_while_the_worker_runs_and_fails_it_after(compose_worker, tmp_path):
    from celery.utils.nodenames import default_nodename

    # In a container $HOSTNAME is its host name, so the check names the worker's default node name.
    assert default_nodename(None) == f"celery@{socket.gethostname()}"
    log = tmp_path / "worker.log"
    with production_worker(compose_worker, log) as worker:
        alive = _shell_check(compose_worker)
    assert alive.returncode == 0, alive.stdout + alive.stderr + log.read_text()[-1500:]
    assert f"{compose_worker['nodename']}: OK" in alive.stdout
    assert worker.returncode == 0, log.read_text()[-1500:]  # a warm shutdown on SIGTERM
    gone = _shell_check(compose_worker)
    assert gone.returncode != 0, gone.stdout


@pytest.fixture
def caddy() -> str:
    binary = shutil.which("caddy")
    if binary is None:
        missing_service("no caddy on PATH: install Debian's (apt-get install caddy) to test the TLS front")
    return binary


def _caddy_env(tmp_path, **extra: str) -> dict[str, str]:
    """Caddy's data (its local authority, certificates) and configuration under ``tmp_path``, nothing from here."""
    home = tmp_path / "caddy"
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        **extra,
    }


def _dials(config: object) -> list[str]:
    """Every upstream address in an adapted Caddy configuration."""
    if isinstance(config, dict):
        return [config["dial"]] if "dial" in config else [d for value in config.values() for d in _dials(value)]
    if isinstance(config, list):
        return [d for value in config for d in _dials(value)]
    return []


def test_it_ships_a_caddyfile_that_caddy_accepts_as_compose_runs_it(caddy, compose_config, tmp_path):  # noqa: F811
    env = _caddy_env(tmp_path, **compose_config["services"]["proxy"]["environment"])
    arguments = ["--config", str(CADDYFILE), "--adapter", "caddyfile"]
    validated = subprocess.run([caddy, "validate", *arguments], env=env, capture_output=True, text=True)
    assert validated.returncode == 0, validated.stderr[-2000:]
    adapted = subprocess.run([caddy, "adapt", *arguments], env=env, capture_output=True, text=True)
    assert adapted.returncode == 0, adapted.stderr[-2000:]
    config = json.loads(adapted.stdout)
    http_app = config["apps"]["http"]
    assert (http_app["http_port"], http_app["https_port"]) == (80, 443)
    assert [server["listen"] for server in http_app["servers"].values()] == [[":443"]]
    assert _dials(http_app) == ["web:8000"]
    assert config["admin"] == {"disabled": True}
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


@pytest.fixture
def tls_front(caddy, compose_config, compose_web, tmp_path):  # noqa: F811
    """The web role on a loopback port behind Caddy with the shipped Caddyfile, on free HTTP and HTTPS ports.

    Yields the HTTPS port and a TLS context that trusts only the root of Caddy's local authority.
    """
    web_port, http_port, https_port = free_port(), free_port(), free_port()
    env = _caddy_env(
        tmp_path,
        **compose_config["services"]["proxy"]["environment"],
        CARTWATCH_UPSTREAM=f"127.0.0.1:{web_port}",
        CARTWATCH_HTTP_PORT=str(http_port),
        CARTWATCH_HTTPS_PORT=str(https_port),
    )
    root = tmp_path / "caddy" / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    log_path = tmp_path / "caddy.log"
    command = [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"]
    with production_web(compose_web, web_port, tmp_path / "web.log"), log_path.open("w") as log:
        proxy = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            tls = _caddy_ready(proxy, root, https_port, log_path)
            yield {"http_port": http_port, "https_port": https_port, "tls": tls}
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)


def _caddy_ready(proxy: subprocess.Popen, root, https_port: int, log_path) -> ssl.SSLContext:
    """Waits until Caddy answers over TLS with a certificate its local authority issued for localhost."""
    deadline = time.monotonic() + 60
    while True:
        try:
            tls = ssl.create_default_context(cafile=str(root))
            urllib.request.urlopen(f"https://localhost:{https_port}/health/live", timeout=5, context=tls)
            return tls
        except OSError:  # no root yet, no listener yet, or no certificate yet
            if proxy.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Caddy did not answer over TLS: " + log_path.read_text()[-2000:])
            time.sleep(0.2)


@needs_postgres
def test_it_answers_the_readiness_probe_over_verified_https_and_redirects_plain_http(tls_front):
    port = tls_front["https_port"]
    ready = urllib.request.urlopen(f"https://localhost:{port}/health/ready", timeout=10, context=tls_front["tls"])
    assert (ready.status, json.loads(ready.read())) == (200, {"status": "ok"})
    plain = http.client.HTTPConnection("localhost", tls_front["http_port"], timeout=10)
    plain.request("GET", "/health/ready")
    redirect = plain.getresponse()
    location = urllib.parse.urlsplit(redirect.getheader("Location"))
    # Caddy names the HTTPS port only when it is not the one it serves: in compose, 443 is also the published one
    assert (redirect.status, location.scheme, location.hostname, location.path) == (
        308,
        "https",
        "localhost",
        "/health/ready",
    )


@needs_postgres
def test_it_records_the_address_the_tls_front_saw_not_the_one_the_client_wrote(tls_front, centre_a):
    from surveillance.api.auth import api_token_create
    from surveillance.models import AuditEntry

    _, raw = api_token_create("behind-the-front", [centre_a])
    client = "127.0.0.2"  # a loopback address of its own, so the client is not the proxy's peer, 127.0.0.1
    port = tls_front["https_port"]
    connection = http.client.HTTPSConnection(
        "localhost", port, context=tls_front["tls"], source_address=(client, 0), timeout=30
    )
    connection.request(
        "GET", "/api/v1/patients", headers={"Authorization": f"Bearer {raw}", "X-Forwarded-For": "203.0.113.7"}
    )
    assert connection.getresponse().status == 200
    assert list(AuditEntry.objects.filter(action="api_get").values_list("remote_addr", flat=True)) == [client]
