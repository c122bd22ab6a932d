"""Liveness and readiness probes for orchestrators and the compose file (no login, no patient data).

``/health/live`` touches nothing: the process answers, so it need not be restarted. ``/health/ready`` says
whether it can serve: the database answers with every migration applied, and the cache (where the API's rate
limits count) answers. ``/health/`` (``surveillance.reminders.views.health``) is the reminder alarm.
"""

from __future__ import annotations

import logging
import uuid

from django.core.cache import cache
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger("surveillance.health")

#: When this process started: the reminder alarm allows a fresh deployment time for its first dispatcher run.
PROCESS_STARTED_AT = timezone.now()

#: Set once every migration is found applied (they are not unapplied under a running process): later probes skip
#: loading the migration graph.
_migrated = False


def migrations_applied() -> bool:
    """Whether the database has every migration this code knows."""
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        _migrated = not executor.migration_plan(executor.loader.graph.leaf_nodes())
    return _migrated


def readiness_problems() -> list[str]:
    """What keeps this process from serving requests, as short phrases (empty: ready)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not migrations_applied():
            return ["migrations not applied"]
    except DatabaseError as exc:
        logger.warning("readiness: database unavailable (%s)", type(exc).__name__)
        return ["database unavailable"]
    problems = []
    key = f"health-ready-{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", 10)
        answered = cache.get(key) == "1"
        cache.delete(key)
    except Exception as exc:  # each cache backend raises its own errors (redis-py's, OSError, ...)
        logger.warning("readiness: cache unavailable (%s)", type(exc).__name__)
        answered = False
    if not answered:
        problems.append("cache unavailable")
    return problems


@never_cache
@require_GET
def live(request):
    """200 as long as the process answers: nothing else is checked (a database outage is no reason to restart)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request):
    """200 when the database (migrated) and the cache answer, else 503 naming what is missing."""
    problems = readiness_problems()
    return JsonResponse({"status": ", ".join(problems) or "ok"}, status=503 if problems else 200)
