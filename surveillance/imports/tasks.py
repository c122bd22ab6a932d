"""Celery tasks of the import wing: thin shells. A run imports whatever jobs are queued; which they are is decided
from the database, so a lost, duplicated or late task message changes nothing but the timing."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from surveillance.imports import jobs


@shared_task(ignore_result=True)
def run_import_jobs() -> dict:
    return jobs.import_jobs_run().as_dict()


def import_jobs_run_soon() -> None:
    """Ask for a run once the current transaction commits (from request code: never before)."""
    transaction.on_commit(run_import_jobs.delay)
