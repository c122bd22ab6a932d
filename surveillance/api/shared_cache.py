"""The cache every web worker shares (Redis, as production configures it with ``CARTWATCH_CACHE_URL``), where the
API counts requests against the rate limits and keeps the tokens it has read; or each process's own memory (the
embedded default)."""

from __future__ import annotations

import functools

import redis
from django.conf import settings
from django.core.cache import cache

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def cache_is_shared() -> bool:
    """What one worker writes there, every worker reads: what is kept there can be taken back everywhere at once."""
    return settings.CACHES["default"]["BACKEND"] == REDIS_CACHE


def shared_redis() -> redis.Redis:
    """The process's one client of the shared cache's Redis server, for what every request does there (with keys
    from ``cache.make_key``): Django's cache builds a new client for each call, which costs more than the round
    trip."""
    return _client(settings.CACHES["default"]["LOCATION"])


@functools.cache
def _client(location: str) -> redis.Redis:
    return redis.Redis.from_url(location)


def window_counts_queue(pipe: redis.client.Pipeline, key: str, previous_key: str, ttl: int) -> None:
    """Queue on ``pipe`` one more request counted under ``key`` (kept ``ttl`` seconds) and a read of the count under
    ``previous_key``: three commands, whose results ``window_counts_read`` reads."""
    pipe.set(cache.make_key(key), 0, ex=ttl, nx=True)
    pipe.incr(cache.make_key(key))
    pipe.get(cache.make_key(previous_key))


def window_counts_read(results: list) -> tuple[int, int]:
    """(this window's count, the previous window's) from the results of ``window_counts_queue``'s commands."""
    _, current, previous = results
    return current, int(previous or 0)
