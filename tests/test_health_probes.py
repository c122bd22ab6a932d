"""GET /health/live and /health/ready, and every health URL on a database that is not migrated yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.cache import caches

from tests.conftest import REPO
from tests.ports import free_port


def test_it_answers_live_without_touching_the_database(client):
    response = client.get("/health/live")  # no django_db mark: a query would raise here
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_it_is_ready_when_the_database_is_migrated_and_the_cache_answers(client):
    response = client.get("/health/ready")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.django_db
def test_it_is_not_ready_while_the_cache_is_unreachable(client, settings):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    try:
        response = client.get("/health/ready")
    finally:
        caches["default"].close()
    assert (response.status_code, response.json()) == (503, {"status": "cache unavailable"})


def test_it_answers_503_not_500_before_the_migrations(tmp_path):
    """A fresh SQLite file of the embedded default, before `migrate`: probes say what is missing."""
    script = (
        "import django, json; django.setup(); from django.test import Client; c = Client(); "
        "print(json.dumps({p: [r.status_code, r.json()['status']] for p in ('/health/live', '/health/ready', "
        "'/health/') for r in [c.get(p)]}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_BROKER"))}
    env.update(CARTWATCH_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    env["DJANGO_ALLOWED_HOSTS"] = "testserver"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "/health/live": [200, "ok"],
        "/health/ready": [503, "migrations not applied"],
        "/health/": [503, "database unavailable"],
    }
