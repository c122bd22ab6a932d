"""Every role's health check in docker-compose.yml passes against the production settings, with no container.

Each role's command runs here as compose starts it, with the environment compose gives it (this test run's
database and broker in place of the compose network's), and its health check runs as compose runs it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import REPO, missing_service
from tests.test_deployment import (  # noqa: F401
    _free_port,
    compose_config,
    compose_role,
    compose_secret,
    compose_web,
    production_web,
)

needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="needs PostgreSQL"
)


@needs_postgres
def test_it_passes_the_web_health_check_with_the_compose_defaults(compose_web, tmp_path):  # noqa: F811
    port = _free_port()
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
