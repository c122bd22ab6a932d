"""Rate limiting: per token for integrations, per user for staff (rates in ``REST_FRAMEWORK``).

Requests are counted in the default cache, which production points at Redis (``CARTWATCH_CACHE_URL``) so that
every web worker counts against the same allowance. A request costs one round trip to it: the count of the
current fixed window is incremented and the previous window's count read in one pipeline, and the two give a
sliding-window estimate (the previous window weighted by how much of it the sliding window still covers). An API
token's request is counted in the round trip that reads the token (``token_count_queue``), so it makes no other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle

from surveillance.access.audit import request_remote_addr
from surveillance.api.auth import TokenPrincipal
from surveillance.api.shared_cache import cache_is_shared, shared_redis, window_counts_queue, window_counts_read


def window_counts(key: str, previous_key: str, ttl: int) -> tuple[int, int]:
    """Count one more request under ``key`` (kept ``ttl`` seconds) and read the count under ``previous_key``."""
    if cache_is_shared():
        pipe = shared_redis().pipeline(transaction=False)
        window_counts_queue(pipe, key, previous_key, ttl)
        return window_counts_read(pipe.execute())
    cache.add(key, 0, ttl)
    return cache.incr(key), cache.get(previous_key, 0)


def seconds_until_allowed(current: int, previous: int, elapsed: float, limit: int, duration: int) -> float:
    """How long until one more request fits the sliding-window estimate, if none is sent meanwhile.

    ``elapsed`` is how far into the current window we are; the estimate at a later point ``x`` seconds on is
    ``previous * (1 - (elapsed + x) / duration) + current`` within this window, ``current * (1 - y / duration)``
    at ``y`` seconds into the next one.
    """
    room = limit - current - 1
    if room >= 0:
        if previous <= room:
            return 0.0
        within = duration * (1 - room / previous) - elapsed
        if within <= duration - elapsed:
            return max(0.0, within)
    into_next = duration * (1 - (limit - 1) / current) if current > limit - 1 else 0.0
    return duration - elapsed + into_next


@dataclass(frozen=True)
class Counted:
    """A request counted before the throttle ran (with its token's read): under which key, in which window, and
    the counts of that window and the one before."""

    key: str
    window: int
    current: int
    previous: int


class PerTokenRateThrottle(SimpleRateThrottle):
    """``token`` rate for each API token, ``staff`` rate for each session user, ``anon`` rate per address."""

    scope = "token"

    @classmethod
    def token_key(cls, digest: str) -> str:
        """The key an API token's requests are counted under: named by its key's digest, known before the token is
        read."""
        return cls.cache_format % {"scope": "token", "ident": f"k{digest[:32]}"}

    @classmethod
    def token_count_queue(cls, pipe: redis.client.Pipeline, digest: str) -> Callable[[list], Counted | None]:
        """Queue on ``pipe`` the count of a request of the token with this digest, as ``allow_request`` would
        count it; returns what reads the count from the queued commands' results (None: tokens are not limited)."""
        rate = cls.THROTTLE_RATES.get("token")
        if rate is None:
            return lambda results: None
        duration = cls().parse_rate(rate)[1]
        key, window = cls.token_key(digest), int(cls.timer() // duration)
        window_counts_queue(pipe, f"{key}:{window}", f"{key}:{window - 1}", 2 * duration)
        return lambda results: Counted(key, window, *window_counts_read(results))

    def get_cache_key(self, request, view):
        user = request.user
        if isinstance(user, TokenPrincipal):
            self.scope = "token"
            key = self.token_key(user.token.digest)
        elif user and user.is_authenticated:
            self.scope = "staff"
            key = self.cache_format % {"scope": self.scope, "ident": f"u{user.pk}"}
        else:
            self.scope = "anon"
            key = self.cache_format % {"scope": self.scope, "ident": request_remote_addr(request) or "unknown"}
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return key

    def allow_request(self, request, view) -> bool:
        """Refused requests count too: a caller that keeps sending while refused stays refused."""
        key = self.get_cache_key(request, view)
        if key is None or self.num_requests is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        self.elapsed = now - window * self.duration
        counted = getattr(request.user, "counted", None)
        if isinstance(counted, Counted) and (counted.key, counted.window) == (key, window):
            self.current, self.previous = counted.current, counted.previous
        else:
            self.current, self.previous = window_counts(f"{key}:{window}", f"{key}:{window - 1}", 2 * self.duration)
        estimate = self.previous * (1 - self.elapsed / self.duration) + self.current
        return estimate <= self.num_requests

    def wait(self) -> float:
        return seconds_until_allowed(self.current, self.previous, self.elapsed, self.num_requests, self.duration)
