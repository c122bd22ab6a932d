"""Celery tasks of the import wing: thin shells. A run imports whatever jobs are queued, a pull pulls every enabled
EHR connection that no other worker holds; which they are is decided from the database, so a lost, duplicated or
late task message changes nothing but the timing."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from surveillance.imports import jobs
from surveillance.imports.pull import runs as pulls


@shared_task(ignore_result=True)
def run_import_jobs() -> dict:
    return jobs.import_jobs_run().as_dict()


@shared_task(ignore_result=True)
def pull_ehr_connections() -> dict:
    return pulls.pulls_run().as_dict()


def import_jobs_run_soon() -> None:
    """Ask for a run once the current transaction commits (from request code: never before)."""
    transaction.on_commit(run_import_jobs.delay)


def import_job_submit(centre, *, format: str, payload: bytes, source_system: str, dry_run: bool, requested_by: str):
    """Store an upload as a job and ask a worker to run it once it commits: what every entry point that hands a
    file to the background does (the API's 202, the workspace's upload page)."""
    job = jobs.import_job_create(
        centre,
        format=format,
        payload=payload,
        source_system=source_system,
        dry_run=dry_run,
        requested_by=requested_by,
    )
    import_jobs_run_soon()
    return job
