"""Prometheus metrics at ``/metrics``: request latency by route, and the figures the health probes compute.

The gauges are read from the database when scraped, with the same bounded queries as ``/health/`` (the reminder
outbox, the dispatcher's last run), plus the webhook outbox and the import jobs by status; request latency is a
histogram by route pattern (``api/v1/patients/<int:pk>``), method and status, never a path or a query string, so
no patient data reaches a label.

Under gunicorn each worker process measures its own requests: with ``PROMETHEUS_MULTIPROC_DIR`` set
(``config/gunicorn.py`` sets it under the var directory), prometheus_client writes them to files there and a scrape
adds up every worker's. The endpoint answers a bearer token (``CARTWATCH_METRICS_TOKEN``) or, without one
configured, clients on loopback only.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

REQUEST_SECONDS = Histogram(
    "cartwatch_http_request_duration_seconds",
    "Time to answer a request, by route pattern, method and status class.",
    ("route", "method", "status"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def _route(request: HttpRequest) -> str:
    """The URL pattern that served the request (no ids, no query), or a fixed word when none did."""
    match = getattr(request, "resolver_match", None)
    return match.route if match is not None and match.route else "unmatched"


class RequestMetricsMiddleware:
    """Times every request into ``REQUEST_SECONDS`` (the route pattern, never the path)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        REQUEST_SECONDS.labels(_route(request), request.method, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


class OutboxCollector(Collector):
    """The reminder, webhook, import-job and EHR-pull figures, read when scraped (nothing is kept between scrapes)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from surveillance import health
        from surveillance.imports.pull.health import pulls_health
        from surveillance.models import ImportJob, WebhookDelivery
        from surveillance.reminders import dispatch

        try:
            ok, reminders = dispatch.reminders_health(timezone.now(), started=health.PROCESS_STARTED_AT)
            webhooks = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
            jobs = dict(ImportJob.objects.values_list("status").annotate(n=Count("pk")).order_by())
            pulls = pulls_health()
        except DatabaseError:
            up = GaugeMetricFamily("cartwatch_database_up", "Whether the database answered the scrape.")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("cartwatch_database_up", "Whether the database answered the scrape.")
        up.add_metric([], 1)
        yield up
        alarm = GaugeMetricFamily("cartwatch_reminder_alarm", "1 when /health/ raises its alarm (see its status).")
        alarm.add_metric([], 0 if ok else 1)
        yield alarm
        counted = GaugeMetricFamily(
            "cartwatch_reminders",
            "Reminders by state (open states counted up to HEALTH_COUNT_LIMIT; outcomes among the newest that many).",
            labels=["state"],
        )
        for state in ("pending", "sending", "late", "sent", "failed", "bounced", "skipped"):
            counted.add_metric([state], reminders[state])
        yield counted
        by_channel = GaugeMetricFamily(
            "cartwatch_reminders_by_channel",
            "Reminders by channel (email, sms, letter) and state, counted as cartwatch_reminders is.",
            labels=["channel", "state"],
        )
        for channel, counts in sorted(reminders["channels"].items()):
            for state, n in counts.items():
                by_channel.add_metric([channel, state], n)
        yield by_channel
        oldest = GaugeMetricFamily("cartwatch_reminder_oldest_pending_seconds", "Age of the oldest due reminder.")
        oldest.add_metric([], reminders["oldest_pending_age_s"])
        yield oldest
        if reminders["last_dispatch_age_s"] is not None:
            age = GaugeMetricFamily("cartwatch_dispatcher_last_run_age_seconds", "Since the dispatcher last finished.")
            age.add_metric([], reminders["last_dispatch_age_s"])
            yield age
        deliveries = GaugeMetricFamily(
            "cartwatch_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
        )
        for status, n in sorted(webhooks.items()):
            deliveries.add_metric([status], n)
        yield deliveries
        imports = GaugeMetricFamily("cartwatch_import_jobs", "Import jobs by status.", labels=["status"])
        for status, n in sorted(jobs.items()):
            imports.add_metric([status], n)
        yield imports
        connections = GaugeMetricFamily(
            "cartwatch_ehr_pull_connections",
            "Enabled EHR connections, and those whose pull is failing or none finished for EHR_PULL_STALE_HOURS.",
            labels=["state"],
        )
        connections.add_metric(["enabled"], pulls["connections"])
        connections.add_metric(["failing"], len(pulls["failing"]))
        connections.add_metric(["stale"], len(pulls["stale"]))
        yield connections


def _registry() -> CollectorRegistry:
    """Every worker's request metrics (multi-process) or this process's, and the outbox figures."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(OutboxCollector())
    return registry


class _ProcessMetrics(Collector):
    """This process's own metrics (the request histogram), for a server without the multi-process directory."""

    def collect(self):
        yield from REGISTRY.collect()


def _allowed(request: HttpRequest) -> bool:
    token = settings.CARTWATCH.get("METRICS_TOKEN") or ""
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
