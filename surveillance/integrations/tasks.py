"""Celery tasks of the integrations (the webhook outbox, the API's idempotency keys): thin shells; what is due is
decided from the database."""

from __future__ import annotations

from celery import shared_task

from surveillance.api import idempotency
from surveillance.integrations import webhooks


@shared_task(ignore_result=True)
def deliver_webhooks() -> int:
    """Post every due webhook delivery (beat runs it every minute); returns how many were handled."""
    return webhooks.webhooks_deliver_due()


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Delete idempotency keys past their retention (beat runs it hourly); returns how many."""
    return idempotency.idempotency_keys_purge()
