"""Whether the default cache is one every web worker shares (Redis, as production configures it with
``CARTWATCH_CACHE_URL``) or each process's own memory (the embedded default)."""

from __future__ import annotations

from django.conf import settings

REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def cache_is_shared() -> bool:
    """What one worker writes there, every worker reads: what is kept there can be taken back everywhere at once."""
    return settings.CACHES["default"]["BACKEND"] == REDIS_CACHE
