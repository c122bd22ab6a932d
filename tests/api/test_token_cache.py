"""Tokens kept in the shared cache (Redis): read from PostgreSQL once, then from the cache, and still revoked,
expired or re-scoped from the very next request in every worker."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from surveillance.api import auth
from surveillance.api.auth import api_token_authenticate, api_token_create, api_token_revoke
from tests.api.conftest import token_client


def token_queries(client, url: str = "/api/v1/centres") -> tuple[int, int]:
    """(status, queries on the token table) of one request."""
    with CaptureQueriesContext(connection) as captured:
        status = client.get(url).status_code
    return status, sum('"surveillance_apitoken"' in query["sql"] for query in captured)


def test_it_reads_a_token_from_postgresql_once_then_from_the_cache(api_a, redis_cache):
    assert token_queries(api_a)[1] >= 1
    assert token_queries(api_a) == (200, 0)
    assert token_queries(api_a) == (200, 0)


def test_it_caches_a_new_token_from_its_first_request(redis_cache, centre_a):
    # nothing can have read a token before it exists, so its creation leaves no marker keeping it out of the cache
    client = token_client(api_token_create("epic-new", [centre_a])[1])
    assert token_queries(client)[1] >= 1
    assert token_queries(client) == (200, 0)


def test_it_reads_the_token_every_time_where_the_cache_is_each_processs_own(api_a):
    token_queries(api_a)
    assert token_queries(api_a) == (200, 1)


def test_it_refuses_a_cached_token_as_soon_as_it_is_revoked(token_a, api_a, redis_cache):
    token_queries(api_a)
    assert token_queries(api_a) == (200, 0)
    assert api_token_revoke(token_a[0]) is True
    assert api_a.get("/api/v1/centres").status_code == 401


def test_it_applies_a_change_of_a_cached_tokens_centres_at_once(token_a, api_a, planned_a, centre_b, redis_cache):
    url = f"/api/v1/patients/{planned_a[0].pk}"
    token_queries(api_a, url)
    assert token_queries(api_a, url) == (200, 0)
    token_a[0].centres.set([centre_b])
    assert api_a.get(url).status_code == 404


def test_it_applies_a_change_made_from_the_centres_side_at_once(token_b, api_b, planned_a, centre_a, redis_cache):
    url = f"/api/v1/patients/{planned_a[0].pk}"
    token_queries(api_b, url)
    assert token_queries(api_b, url) == (404, 0)
    centre_a.api_tokens.add(token_b[0])
    assert api_b.get(url).status_code == 200


@pytest.fixture
def both_centres(centre_a, centre_b) -> APIClient:
    """A client with a token of centres A and B (issued before the cache is Redis: a token's centres being set
    makes every worker read it from PostgreSQL for a while, as any change of its centres does)."""
    return token_client(api_token_create("both", [centre_a, centre_b])[1])


def test_it_applies_a_centre_clearing_its_tokens_at_once(both_centres, centre_b, redis_cache):
    client = both_centres
    token_queries(client)
    assert token_queries(client) == (200, 0)
    centre_b.api_tokens.clear()
    assert [c["code"] for c in client.get("/api/v1/centres").json()["results"]] == ["a"]


def test_it_refuses_a_cached_token_once_it_expires(centre_a, redis_cache):
    now = timezone.now()
    _token, raw = api_token_create("night-feed", [centre_a], expires_at=now + dt.timedelta(hours=1))
    assert api_token_authenticate(raw, now) is not None
    assert api_token_authenticate(raw, now + dt.timedelta(minutes=59)) is not None
    assert api_token_authenticate(raw, now + dt.timedelta(hours=1)) is None


def test_it_keeps_a_copy_read_before_a_revocation_out_of_the_cache(token_a, api_a, redis_cache, monkeypatch):
    """A request reads the token, the token is revoked, then the request stores what it read: it must not stick."""
    add = auth._entry_add

    def revoke_first(*args, **kwargs):
        api_token_revoke(token_a[0])
        return add(*args, **kwargs)

    monkeypatch.setattr(auth, "_entry_add", revoke_first)
    assert api_a.get("/api/v1/centres").status_code == 200  # it read the token before the revocation
    monkeypatch.undo()
    assert api_a.get("/api/v1/centres").status_code == 401
