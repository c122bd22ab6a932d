"""Celery tasks: thin shells around plain functions. Each says "do this batch now"; what is due is decided from
the database, so a lost, duplicated or late task message changes nothing but the timing."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.db import transaction

from surveillance.reminders import digests, dispatch, prepare, sweep


@shared_task(ignore_result=True)
def dispatch_due_reminders(joining: bool = False) -> dict:
    """A dispatcher run; when more than a batch is due, idle worker slots are asked to join it first."""
    if not joining:
        for _ in range(dispatch.helpers_wanted()):
            dispatch_due_reminders.apply_async(kwargs={"joining": True}, expires=60)
    return dispatch.dispatch_run().as_dict()


@shared_task(ignore_result=True)
def prepare_reminders() -> dict:
    return prepare.reminders_prepare().as_dict()


@shared_task(ignore_result=True)
def daily_sweep() -> dict:
    return sweep.daily_sweep().as_dict()


@shared_task(ignore_result=True, autoretry_for=(smtplib.SMTPException, OSError), retry_backoff=60, max_retries=6)
def weekly_digest() -> int:
    return sweep.care_team_digest_send()


@shared_task(ignore_result=True, autoretry_for=(smtplib.SMTPException, OSError), retry_backoff=60, max_retries=6)
def daily_digest() -> dict:
    return digests.daily_digests_send().as_dict()


def dispatch_soon() -> None:
    """Ask for a dispatcher run once the current transaction commits (from request code: never before)."""
    transaction.on_commit(dispatch_due_reminders.delay)
