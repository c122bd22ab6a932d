"""Imports as background jobs: an upload too large to import within a request (or sent with FHIR's
``Prefer: respond-async``) is stored as an ``ImportJob`` and imported by a worker with the same functions as the
synchronous path, so the finished job's report is the one the request would have answered.

What the rows say, so that a job is never run twice at once and an interrupted one completes exactly:

1. **Claim**: ``queued -> running`` with a lease and ``attempts + 1``, in one conditional UPDATE checked by row
   count (candidates read with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL): one worker wins.
2. **Progress**: NDJSON is applied in batches; each batch commits together with the job's ``lines_done`` (its last
   line), ``progress`` (the report of every batch so far) and a renewed lease, by a conditional UPDATE on the
   claim. Should the claim have been taken over meanwhile, the UPDATE counts no row, the batch is rolled back and
   the worker stops (``LeaseLost``). A Bundle or a CSV is atomic: the import and the job's completion commit in
   one transaction.
3. **Lease recovery**: a job still ``running`` after its lease expired (its worker died) goes back to ``queued``,
   attempts kept, and the next run resumes it after ``lines_done`` with the report so far: nothing is applied
   twice, and the final report counts every line once. After ``IMPORT_MAX_ATTEMPTS`` claims the job fails with
   what was committed named in its outcome.

Logs carry job ids and counts only, never the upload's content.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError, ImportIssue
from surveillance.imports.report import COUNTERS, ImportReport
from surveillance.imports.uploads import upload_import
from surveillance.models import ImportFormat, ImportJob, ImportJobPatient, ImportJobStatus, Patient
from surveillance.models import audit as audit_models
from surveillance.reminders.dispatch import worker_id

logger = logging.getLogger("surveillance.imports.jobs")


class LeaseLost(Exception):
    """The job's claim was taken over (its lease expired): what this worker applied since is rolled back."""


def _cfg(name: str) -> int:
    return settings.CARTWATCH[name]


def import_sync_max_bytes() -> int:
    """Uploads larger than this are imported as a job (202 and a status URL) rather than within the request."""
    return _cfg("IMPORT_SYNC_MAX_BYTES")


def prefers_async(prefer_header: str) -> bool:
    """Whether a ``Prefer`` header (RFC 7240) asks for ``respond-async``, as FHIR's asynchronous pattern does."""
    names = (part.split(";")[0].split("=")[0].strip().lower() for part in prefer_header.split(","))
    return "respond-async" in names


@dataclass
class JobsRunResult:
    reclaimed: int = 0
    done: int = 0
    failed: int = 0
    lost: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# --- creating -----------------------------------------------------------------------------------------------------
def import_job_create(
    centre, *, format: str, payload: bytes, source_system: str, dry_run: bool, requested_by: str
) -> ImportJob:
    """Store an upload to import in the background (the caller enqueues a run once this commits)."""
    lines_total = None
    if format == ImportFormat.NDJSON:
        lines_total = payload.count(b"\n") + (1 if payload and not payload.endswith(b"\n") else 0)
    job = ImportJob.objects.create(
        centre=centre,
        format=format,
        payload=payload,
        payload_bytes=len(payload),
        lines_total=lines_total,
        source_system=source_system,
        dry_run=dry_run,
        requested_by=requested_by[:150],
    )
    logger.info("import job=%s queued: %s, %s bytes", job.pk, format, len(payload))
    return job


# --- claiming and recovery ----------------------------------------------------------------------------------------
def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=_cfg("IMPORT_LEASE_SECONDS"))


def import_job_claim(token: str, now: dt.datetime | None = None) -> ImportJob | None:
    """Claim the oldest queued job for ``token``; None when there is none (or another worker won each)."""
    now = now or timezone.now()
    with transaction.atomic():
        queued = ImportJob.objects.filter(status=ImportJobStatus.QUEUED).order_by("created_at", "pk")
        if db_connection.features.has_select_for_update_skip_locked:
            queued = queued.select_for_update(skip_locked=True)
        pk = queued.values_list("pk", flat=True).first()
        if pk is None:
            return None
        won = ImportJob.objects.filter(pk=pk, status=ImportJobStatus.QUEUED).update(
            status=ImportJobStatus.RUNNING,
            lease_expires_at=_lease(now),
            claimed_by=token,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    if not won:
        return None
    # the upload stays in the database: an NDJSON job reads it a chunk at a time, an atomic one when it runs
    return ImportJob.objects.select_related("centre").defer("payload").get(pk=pk)


def import_job_reclaim_expired(now: dt.datetime | None = None) -> int:
    """Put jobs whose worker died (lease expired while ``running``) back in the queue; returns how many."""
    now = now or timezone.now()
    reclaimed = 0
    stuck = ImportJob.objects.filter(status=ImportJobStatus.RUNNING, lease_expires_at__lt=now)
    for pk, lease, attempts, lines_done in list(
        stuck.values_list("pk", "lease_expires_at", "attempts", "lines_done")[:100]
    ):
        claim = ImportJob.objects.filter(pk=pk, status=ImportJobStatus.RUNNING, lease_expires_at=lease)
        if _requeue(claim, attempts, lines_done, now):
            reclaimed += 1
            logger.info("import job=%s reclaimed after its lease (attempt %s, line %s)", pk, attempts, lines_done)
    return reclaimed


def _requeue(claim, attempts: int, lines_done: int, now: dt.datetime) -> bool:
    """Put a claimed job back in the queue (a conditional UPDATE on the claim); True if it was.

    A job claimed ``IMPORT_MAX_ATTEMPTS`` times without finishing fails instead, saying what was committed.
    """
    if attempts >= _cfg("IMPORT_MAX_ATTEMPTS"):
        if _finish(claim, 500, _given_up(attempts, lines_done), now=now):
            logger.warning("import job failed: %s attempts did not finish", attempts)
        return False
    return bool(claim.update(status=ImportJobStatus.QUEUED, lease_expires_at=None, claimed_by="", updated_at=now))


def _given_up(attempts: int, lines_done: int) -> dict:
    applied = f"lines 1 to {lines_done} were imported" if lines_done else "nothing was imported"
    issue = ImportIssue(
        None, None, "", f"the import stopped {attempts} times without finishing; {applied}", "exception"
    )
    return FhirImportError([issue]).to_operation_outcome()


# --- running ------------------------------------------------------------------------------------------------------
def import_jobs_run(budget_seconds: float | None = None) -> JobsRunResult:
    """A worker's run: take back jobs whose worker died, then import queued jobs one by one until none is left or
    the time budget is spent (a job started is finished, however long it takes)."""
    result = JobsRunResult(reclaimed=import_job_reclaim_expired())
    budget = _cfg("IMPORT_BUDGET_SECONDS") if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    token = f"{worker_id()}:{secrets.token_hex(4)}"[:64]
    while time.monotonic() < deadline:
        job = import_job_claim(token)
        if job is None:
            break
        try:
            status = import_job_run(job, token)
        except LeaseLost:
            result.lost += 1
            logger.warning("import job=%s taken over by another worker; stopped", job.pk)
            continue
        except Exception as exc:
            # A failing job must not hold its claim until the lease runs out. Its type only is logged: a database
            # error's message may quote the upload's values.
            logger.error("import job=%s attempt %s failed: %s", job.pk, job.attempts, type(exc).__name__)
            claim = ImportJob.objects.filter(pk=job.pk, status=ImportJobStatus.RUNNING, claimed_by=token)
            lines_done = claim.values_list("lines_done", flat=True).first() or 0
            if not _requeue(claim, job.attempts, lines_done, timezone.now()):
                result.failed += 1
            break  # the next run tries it again
        if status == ImportJobStatus.DONE:
            result.done += 1
        else:
            result.failed += 1
    return result


def import_job_run(job: ImportJob, token: str) -> str:
    """Import a claimed job's upload with the synchronous path's functions and record the outcome: the report
    (200), or the OperationOutcome that refused the upload (400). Returns the job's final status.

    Raises ``LeaseLost`` when another worker took the job over: what this one applied since is rolled back.
    """
    claim = ImportJob.objects.filter(pk=job.pk, status=ImportJobStatus.RUNNING, claimed_by=token)
    label = audit_models.request_actor_label.set(job.requested_by)  # changes are the requester's, as in a request
    try:
        if job.format == ImportFormat.NDJSON:
            status, outcome, report = _outcome(lambda: _ndjson_run(job, claim))  # each batch commits on its own
            with transaction.atomic():
                finished = _finish(claim, status, outcome, progress=_state_kept(job, report))
                if not finished:
                    raise LeaseLost(job.pk)
        else:
            with transaction.atomic():  # the import commits with the job's outcome, or neither does
                status, outcome, report = _outcome(lambda: _atomic_run(job))
                finished = _finish(claim, status, outcome, progress=_state_kept(job, report))
                if not finished:
                    raise LeaseLost(job.pk)
    finally:
        audit_models.request_actor_label.reset(label)
    if not finished:
        raise LeaseLost(job.pk)
    logger.info("import job=%s finished: %s", job.pk, status)
    return ImportJobStatus.DONE if status == 200 else ImportJobStatus.FAILED


def _outcome(run) -> tuple[int, dict, ImportReport | None]:
    """What the status URL will answer (200 and the report, or 400 and the OperationOutcome that refused the
    upload), and the report (None when refused)."""
    try:
        report = run()
    except FhirImportError as exc:
        return 400, exc.to_operation_outcome(), None
    return 200, report.as_dict(), report


def _state_kept(job: ImportJob, report: ImportReport | None) -> dict | None:
    """The final report's state, its patients recorded beside it (those of an NDJSON job's batches already are)."""
    if report is None:
        return None
    job_patients_record(job, report.patient_ids)
    return report_state(report)


def job_patients_record(job: ImportJob, patient_ids) -> None:
    """Record that the job touched these patients (``ImportJobPatient``: who its report is about, for the audit
    of whoever fetches it). A dry run's new patients were rolled back: only those that exist are recorded."""
    ids = set(patient_ids)
    if job.dry_run and ids:
        ids = set(Patient.objects.filter(pk__in=ids).values_list("pk", flat=True))
    ImportJobPatient.objects.bulk_create(
        [ImportJobPatient(job_id=job.pk, patient_id=pk) for pk in sorted(ids)], ignore_conflicts=True
    )


def job_patient_ids(job: ImportJob) -> list[int]:
    """The patients the job touched, in id order."""
    return list(job.patients.order_by("patient_id").values_list("patient_id", flat=True))


def _atomic_run(job: ImportJob) -> ImportReport:
    return upload_import(
        bytes(job.payload), job.format, job.centre, source_system=job.source_system, dry_run=job.dry_run
    )


def _ndjson_run(job: ImportJob, claim) -> ImportReport:
    """Import the NDJSON after the last committed line; each batch commits with the job's progress."""
    resume = not job.dry_run  # a dry run is one transaction rolled back: nothing to resume, nothing to record
    start = job.lines_done if resume else 0

    def on_batch(batch: ImportReport, last_line: int) -> None:
        so_far = _progress(claim)
        so_far.merge(batch)
        job_patients_record(job, batch.patient_ids)
        now = timezone.now()
        if not claim.update(
            lines_done=last_line, progress=report_state(so_far), lease_expires_at=_lease(now), updated_at=now
        ):
            raise LeaseLost(job.pk)

    run = ehr_import.ndjson_import(
        payload_lines(job.pk, start),
        job.centre,
        source_system=job.source_system,
        dry_run=job.dry_run,
        batch_lines=_cfg("IMPORT_BATCH_LINES"),
        start_line=start + 1,
        on_batch=on_batch if resume else None,
    )
    report = _progress(claim) if resume else run
    report.lines = start + run.lines
    return report


def payload_lines(pk: int, start: int = 0) -> Iterator[bytes]:
    """The lines of job ``pk``'s upload after the first ``start``, each with its line end, read from the database
    ``IMPORT_READ_CHUNK_BYTES`` at a time: however large the upload, a worker holds one chunk of it, not the whole
    file (and a copy or two of it) for the hours a registry's import takes."""
    size = _cfg("IMPORT_READ_CHUNK_BYTES")
    table = db_connection.ops.quote_name(ImportJob._meta.db_table)
    offset, rest, seen = 1, b"", 0
    while True:
        with db_connection.cursor() as cursor:
            cursor.execute(f"SELECT substr(payload, %s, %s) FROM {table} WHERE id = %s", [offset, size, pk])
            row = cursor.fetchone()
        chunk = bytes(row[0]) if row and row[0] else b""
        if not chunk:
            break
        offset += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if seen >= start:
                yield line + b"\n"
            seen += 1
    if rest and seen >= start:
        yield rest


def _progress(claim) -> ImportReport:
    """The report of the batches committed so far, read on the claim (``LeaseLost`` if it was taken over)."""
    state = claim.values_list("progress", flat=True).first()
    if state is None:
        raise LeaseLost("the claim was taken over")
    return report_from_state(state)


def _finish(claim, status: int, outcome: dict, *, progress: dict | None = None, now: dt.datetime | None = None) -> int:
    """Record a job's outcome on its claim (a conditional UPDATE: 0 when the claim was lost) and drop the upload.

    ``progress``: the final report's state (kept for the audit trail of who fetched it); left as is when None.
    """
    now = now or timezone.now()
    return claim.update(
        status=ImportJobStatus.DONE if status == 200 else ImportJobStatus.FAILED,
        result=outcome,
        result_status=status,
        finished_at=now,
        lease_expires_at=None,
        payload=b"",
        updated_at=now,
        **({"progress": progress} if progress is not None else {}),
    )


# --- the report between batches -----------------------------------------------------------------------------------
def report_state(report: ImportReport) -> dict:
    """What a job keeps of its report so far: the counters, reasons and reported problems, bounded whatever the
    upload's size (the patients it touched are rows of their own: ``job_patients_record``)."""
    return {
        **{name: getattr(report, name) for name in COUNTERS},
        "ignored": dict(report.ignored),
        "errors": [asdict(issue) for issue in report.errors],
        "error_count": report.error_count,
        "lines": report.lines,
    }


def report_from_state(state: dict) -> ImportReport:
    """The report an NDJSON job kept (``report_state``), to add the next batch to."""
    report = ImportReport(format="ndjson")
    for name in COUNTERS:
        setattr(report, name, state.get(name, 0))
    report.ignored = Counter(state.get("ignored", {}))
    report.errors = [ImportIssue(**issue) for issue in state.get("errors", [])]
    report.error_count = state.get("error_count", 0)
    report.lines = state.get("lines", 0)
    return report
