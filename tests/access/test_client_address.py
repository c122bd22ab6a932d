"""The client address behind a reverse proxy: the audit trail, the sign-in throttle and the API's anonymous rate
limit all read the X-Forwarded-For entry the trusted proxy wrote, and nothing a client wrote itself."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import reverse
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from surveillance.api.throttling import PerTokenRateThrottle
from surveillance.models import AuditEntry

pytestmark = pytest.mark.django_db

PROXY = "172.18.0.5"  # Caddy's address on the compose network


def _fail_sign_in(forwarded: str) -> None:
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    client.post(reverse("admin:login"), {"username": "nobody", "password": "wrong-password", "next": "/admin/"})


def test_it_records_the_address_the_trusted_proxy_saw(login, coordinator_a, settings):
    settings.TRUSTED_PROXIES = 1
    client = login(coordinator_a)
    client.get("/api/v1/patients/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR=PROXY)
    assert AuditEntry.objects.get(action="api_get").remote_addr == "203.0.113.9"


def test_it_ignores_the_header_without_a_trusted_proxy(db, settings):
    settings.TRUSTED_PROXIES = 0
    _fail_sign_in("203.0.113.9")
    assert AuditEntry.objects.get(action="login_failed").remote_addr == PROXY


def test_it_ignores_a_forwarded_entry_that_is_not_an_address(db, settings):
    settings.TRUSTED_PROXIES = 1
    _fail_sign_in("not-an-address")
    assert AuditEntry.objects.get(action="login_failed").remote_addr == PROXY


def test_it_throttles_sign_in_per_client_behind_the_proxy(db, settings):
    settings.TRUSTED_PROXIES = 1
    settings.CARTWATCH = {**settings.CARTWATCH, "LOGIN_FAILURES_PER_ADDRESS": 2, "LOGIN_FAILURES_PER_USER": 100}
    for spoofed in ("1.1.1.1", "2.2.2.2"):  # what the client writes itself does not make it someone else
        _fail_sign_in(f"{spoofed}, 203.0.113.9")
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9")
    refused = client.post(reverse("admin:login"), {"username": "someone", "password": "x", "next": "/admin/"})
    assert "Too many failed sign-in attempts" in refused.content.decode()
    other = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.10")
    other.post(reverse("admin:login"), {"username": "someone", "password": "x", "next": "/admin/"})
    assert AuditEntry.objects.filter(action="login_failed", remote_addr="203.0.113.10").count() == 1


def test_it_rate_limits_anonymous_api_callers_per_client_behind_the_proxy(db, settings):
    settings.TRUSTED_PROXIES = 1

    def key(forwarded: str) -> str:
        request = Request(APIRequestFactory().get("/api/schema/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=PROXY))
        request.user = AnonymousUser()
        return PerTokenRateThrottle().get_cache_key(request, None)

    assert key("1.1.1.1, 203.0.113.9") == key("2.2.2.2, 203.0.113.9")  # one client, whatever it writes itself
    assert key("203.0.113.9") != key("203.0.113.10")
    assert "203.0.113.9" in key("203.0.113.9")
