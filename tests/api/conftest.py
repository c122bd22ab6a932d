"""Fixtures of the API tests: an integration token for centre A and one for centre B, clients carrying them, a
patient at centre A with an infusion planned (so visits and reminders exist), and the default cache on Redis as
production shares it."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
import redis
from django.core import signals
from django.db import close_old_connections
from django.test import override_settings
from rest_framework.test import APIClient, ForceAuthClientHandler

from surveillance.api.auth import api_token_create
from surveillance.api.shared_cache import REDIS_CACHE
from surveillance.api.token_requests import TokenChainMixin, carries_api_token
from surveillance.care import planning
from tests.conftest import missing_service


class TokenChainClientHandler(TokenChainMixin, ForceAuthClientHandler):
    """The test client's handler with the token requests' middleware chain."""


class RoutingClientHandler(ForceAuthClientHandler):
    """Routes the test client's requests as the web role's ``RoutingWSGIHandler`` does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.token_handler = TokenChainClientHandler(*args, **kwargs)

    def __call__(self, environ):
        if carries_api_token(environ):
            return self.token_handler(environ)
        return super().__call__(environ)


def token_client(raw: str) -> APIClient:
    """A client carrying an API token, served through the same middleware as in production."""
    client = APIClient()
    client.handler = RoutingClientHandler(enforce_csrf_checks=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def connection_kept_open():
    """Requests sent straight to the WSGI application must not close the test's database connection (as Django's
    test client arranges for its own requests)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def token_a(centre_a):
    return api_token_create("epic-a", [centre_a])


@pytest.fixture
def token_b(centre_b):
    return api_token_create("cerner-b", [centre_b])


@pytest.fixture
def api_a(token_a) -> APIClient:
    return token_client(token_a[1])


@pytest.fixture
def api_b(token_b) -> APIClient:
    return token_client(token_b[1])


@pytest.fixture
def readonly_a(centre_a) -> APIClient:
    return token_client(api_token_create("reporting-a", [centre_a], read_only=True)[1])


@pytest.fixture
def staff_client():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def redis_cache():
    """The default cache as production shares it: a Redis server (with a prefix of this test's own)."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        missing_service("the Redis cache needs a Redis server (set CELERY_BROKER_URL=redis://...)")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        missing_service(f"no Redis server at {url}")
    prefix = f"test-cache-{uuid.uuid4().hex}"
    backend = {"BACKEND": REDIS_CACHE, "LOCATION": url, "KEY_PREFIX": prefix}
    with override_settings(CACHES={"default": backend}):
        yield
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


@pytest.fixture
def planned_a(centre_a, make_patient, make_infusion):
    """A patient of centre A, infused 60 days ago, schedule planned."""
    patient = make_patient(centre_a, source_system="epic", source_id="pat-1")
    infusion = make_infusion(patient, infusion_date=dt.date.today() - dt.timedelta(days=60))
    planning.infusion_plan(infusion)
    return patient, infusion
