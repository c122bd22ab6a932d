"""Which EHR connections are behind, for ``/health/`` and the admin: no patient data, one bounded query each.

A connection is *failing* while its open run's last attempt failed, and *stale* when no pull of it has finished for
``EHR_PULL_STALE_HOURS`` (counted from its creation until its first pull). Either makes the check ``degraded``.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from surveillance.models import EhrConnection, EhrPullRun, PullStatus


def pulls_health(now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=settings.CARTWATCH["EHR_PULL_STALE_HOURS"])
    enabled = list(EhrConnection.objects.filter(enabled=True).values_list("pk", "last_pulled_at", "created_at"))
    failing = sorted(
        EhrPullRun.objects.filter(status=PullStatus.FAILED, connection__enabled=True).values_list(
            "connection_id", flat=True
        )
    )
    stale = sorted(pk for pk, pulled, created in enabled if (pulled or created) < cutoff)
    pulled = [moment for _, moment, _ in enabled if moment is not None]
    return {
        "status": "degraded" if failing or stale else "ok",
        "connections": len(enabled),
        "failing": failing,
        "stale": stale,
        "oldest_pull_age_s": round((now - min(pulled)).total_seconds()) if pulled else None,
    }
