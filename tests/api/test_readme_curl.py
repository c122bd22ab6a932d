"""The README's integration guide works: its curl commands run against a live server (gunicorn, own database)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.api.test_import_fhir import car_t_bundle
from tests.conftest import REPO, missing_service
from tests.imports.conftest import BULK
from tests.ports import free_port

SKIPPED_PREFIXES = ("python manage.py", "export TOKEN=")


def guide_commands() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Integration guide", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return "\n".join(line for line in block.splitlines() if not line.startswith(SKIPPED_PREFIXES))


def guide_token_command() -> list[str]:
    """The guide's ``python manage.py create_api_token ...`` line, as arguments after ``manage.py``."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("python manage.py create_api_token"))
    return shlex.split(line.split("#", 1)[0])[2:]


def manage(env, *args) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_it_runs_the_readme_curl_commands_against_a_live_server(tmp_path):
    if shutil.which("curl") is None:
        missing_service("curl is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_BROKER_URL"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CARTWATCH_VAR_DIR=str(tmp_path / "var"),
        DJANGO_ENV="development",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    manage(env, "migrate", "--noinput")
    manage(env, "load_seeds")
    manage(
        env,
        "shell",
        "-c",
        "from surveillance.models import TreatmentCentre as T; "
        "T.objects.create(code='centre-a', name='Centre A', care_team_email='team-a@example.org')",
    )
    token = manage(env, *guide_token_command()).strip()  # the README's command as written
    (tmp_path / "bundle.json").write_text(json.dumps(car_t_bundle()))
    shutil.copy(BULK / "Patient.000.ndjson", tmp_path / "Patient.000.ndjson")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", guide_commands()],
            cwd=tmp_path,
            env={**env, "TOKEN": token, "CARTWATCH": base},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
    for expected in ('"dry_run":true', '"resourceType":"CarePlan"', "BEGIN:VCALENDAR", '"status":"completed"'):
        assert expected in done.stdout, expected
