"""Rate limits: counted per token in the shared cache (Redis in production) with one round trip per request."""

from __future__ import annotations

import pytest
import redis

from surveillance.api.throttling import PerTokenRateThrottle, seconds_until_allowed

RATES = {"token": "3/min", "staff": "3/min", "anon": "3/min"}


@pytest.fixture(params=["locmem", "redis"])
def shared_cache(request):
    """Each process's own cache (development) and the Redis server every web worker shares (production)."""
    if request.param == "redis":
        request.getfixturevalue("redis_cache")


def test_it_limits_each_token_on_its_own_in_the_shared_cache(api_a, api_b, monkeypatch, shared_cache):
    monkeypatch.setattr(PerTokenRateThrottle, "THROTTLE_RATES", RATES)
    assert [api_a.get("/api/v1/centres").status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = api_a.get("/api/v1/centres")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 120
    assert api_b.get("/api/v1/centres").status_code == 200


def test_it_counts_a_request_in_one_round_trip_to_the_redis_cache(api_a, monkeypatch, redis_cache):
    monkeypatch.setattr(PerTokenRateThrottle, "THROTTLE_RATES", {**RATES, "token": "100/min"})
    assert api_a.get("/api/v1/centres").status_code == 200  # the connection is set up
    sends = []
    send = redis.connection.Connection.send_packed_command
    monkeypatch.setattr(
        redis.connection.Connection, "send_packed_command", lambda *a, **k: sends.append(1) or send(*a, **k)
    )
    assert api_a.get("/api/v1/centres").status_code == 200
    assert sends == [1]  # the token (kept there since the first request: test_token_cache) read, the request counted


def test_it_weighs_the_previous_window_by_the_part_still_covered():
    # 10 per 60 s: 4 in this window, 12 in the previous one, 30 s in: one more makes 12 * 0.5 + 5 = 11; at 35 s in,
    # 12 * (25 / 60) + 5 = 10 fits
    assert seconds_until_allowed(current=4, previous=12, elapsed=30, limit=10, duration=60) == pytest.approx(5)
    assert seconds_until_allowed(current=4, previous=2, elapsed=30, limit=10, duration=60) == 0
    # this window alone is over the limit: wait for it to end, then for its weight to fall
    assert seconds_until_allowed(current=20, previous=0, elapsed=45, limit=10, duration=60) == pytest.approx(15 + 33)
