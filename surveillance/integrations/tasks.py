"""Celery task of the webhook outbox: a thin shell; what is due is decided from the database."""

from __future__ import annotations

from celery import shared_task

from surveillance.integrations import webhooks


@shared_task(ignore_result=True)
def deliver_webhooks() -> int:
    """Post every due webhook delivery (beat runs it every minute); returns how many were handled."""
    return webhooks.webhooks_deliver_due()
