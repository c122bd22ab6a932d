"""`make run`'s serving step on the embedded default: the admin answers over real HTTP and a demo login works.

It runs the same commands as `make run` (migrate, collectstatic, load_seeds, seed_demo, ensure_demo_users,
bin/serve) in a scratch folder, then stops everything with SIGINT as Ctrl-C would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO
from tests.ports import free_port
from tests.reminders.conftest import add_reminder, open_visit  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_env(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(CARTWATCH_VAR_DIR=str(tmp_path), CARTWATCH_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    return env


def _manage(env, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True)


def test_it_serves_the_admin_and_logs_in_a_demo_user(embedded_env, tmp_path):
    _manage(embedded_env, "migrate", "--noinput")
    _manage(embedded_env, "collectstatic", "--noinput", "--verbosity", "0")
    _manage(embedded_env, "load_seeds")
    _manage(embedded_env, "seed_demo", "--patients", "12")
    _manage(embedded_env, "ensure_demo_users")
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        ["bin/serve"],
        cwd=REPO,
        env=embedded_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{embedded_env['CARTWATCH_PORT']}"
    try:
        session = requests.Session()
        for _ in range(100):
            try:
                login = session.get(f"{base}/admin/login/", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):  # gunicorn listens before its workers boot
                time.sleep(0.2)
        else:
            pytest.fail("the server did not answer: " + (tmp_path / "serve.log").read_text()[-2000:])
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        page = session.post(
            f"{base}/admin/login/?next=/admin/",
            data={"username": "coordinator-a", "password": "cartwatch-demo", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/admin/login/"},
            timeout=10,
        )
        assert page.status_code == 200
        assert "Log out" in page.text and "Patients" in page.text
        patients = session.get(f"{base}/admin/surveillance/patient/", timeout=10)
        assert re.search(r"NF-0000\d\d", patients.text)
        assert "CS-0000" not in patients.text  # coordinator-a sees centre A only
        assert session.get(f"{base}/static/admin/css/base.css", timeout=10).status_code == 200  # the admin's styles
        for _ in range(50):
            output = (tmp_path / "serve.log").read_text()
            if "Ctrl-C stops" in output:
                break
            time.sleep(0.2)
        banner = output.index("CAR-T Watch is running.")
        assert "Booting worker" in output[:banner], "the banner came before the web server was up"
        assert f"{base}/admin/" in output[banner:]
        assert f"{base}/admin/mailbox/" in output[banner:]  # where the written emails can be read
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail("Ctrl-C did not stop the server, worker and beat")
        log.close()
    # nothing of the process group is left behind (the embedded beat process may take a moment to finish)
    for _ in range(60):
        leftover = subprocess.run(["pgrep", "-g", str(server.pid)], capture_output=True, text=True).stdout.strip()
        if not leftover:
            break
        time.sleep(0.5)
    assert leftover == "", "processes outlived Ctrl-C"


def _shell(env, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )


def test_it_writes_the_embedded_defaults_emails_to_files_with_one_line_each(embedded_env, tmp_path):
    result = _shell(
        embedded_env,
        "from django.core.mail import send_mail; from django.conf import settings; "
        "send_mail('Visit reminder', 'body', 'a@example.org', ['patient@example.org']); print(settings.SITE_URL)",
    )
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "mail").iterdir())
    assert len(files) == 1 and "Subject: Visit reminder" in files[0].read_text()
    assert "body" not in result.stdout and "Subject" not in result.stdout  # not printed whole
    lines = [line for line in result.stderr.splitlines() if "written to" in line]
    assert len(lines) == 1 and str(files[0]) in lines[0] and "patient@example.org" not in lines[0]
    assert (
        result.stdout.strip().splitlines()[-1] == f"http://127.0.0.1:{embedded_env['CARTWATCH_PORT']}"
    )  # follows the port


@pytest.mark.django_db
def test_it_writes_the_dispatchers_reminders_to_files_under_the_embedded_default(
    settings,
    tmp_path,
    caplog,
    centre_a,
    make_patient,
    open_visit,  # noqa: F811
):
    from django.utils import timezone

    from surveillance.reminders import dispatch

    settings.EMAIL_BACKEND = "config.mail.SummaryFileEmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    patient = make_patient(centre_a, email="kept.out.of.logs@example.org")
    now = timezone.now()
    add_reminder(open_visit(patient, timezone.localdate(now, centre_a.tz)), now)
    caplog.set_level("INFO", logger="surveillance.mail")
    assert dispatch.dispatch_run(now).sent == 1
    (written,) = (tmp_path / "mail").iterdir()
    assert "kept.out.of.logs@example.org" in written.read_text()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "surveillance.mail"]
    assert line == f"1 email(s) written to {written}"
