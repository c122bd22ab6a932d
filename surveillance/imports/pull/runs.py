"""Pulling a connection: claim its run, drive the export, import its files, advance ``_since``.

What the rows say, so that a connection is never pulled twice at once and an interrupted pull completes exactly:

1. **Claim**: a connection has at most one open run (a partial unique index). A worker opens one (``running``,
   with a lease), or takes the open one by a conditional UPDATE checked by row count: a ``failed`` run, a
   ``waiting`` one whose Retry-After has passed, a ``running`` one whose worker's lease expired. A second beat finds
   nothing to claim, and two opening a run at once are told apart by the unique index.
2. **The export**: the status URL is kept as soon as the kick-off answers, so a later attempt polls the same
   export rather than asking for another. An export still being prepared after ``EHR_PULL_WAIT_SECONDS`` is left
   ``waiting`` for the next beat. The manifest is kept whole, and its files listed in import order.
3. **The files**: each is streamed to the run's own temporary folder, imported through ``ehr_import.ndjson_import``
   and deleted.
   Each batch of lines commits with the file's ``lines_done`` and the run's report, so a file half imported goes
   on after its last committed line and a file imported is never fetched again.
4. **Done**: the run's completion and the connection's new ``since`` (the manifest's ``transactionTime``) commit
   together, only once every file is imported.

A failure (an EHR error, a dropped connection, a refused token) leaves the run ``failed`` with its reason and
everything it had done; the next beat resumes it. The EHR no longer knowing the export (404, 410, a failed
export) makes the next attempt ask for it again with the same ``_since``: files already imported then come again,
and the importer finds them unchanged.

Logs carry connection and run ids, counts and statuses only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from surveillance.access.audit import audit_acting_as
from surveillance.imports import ehr_import
from surveillance.imports.jobs import LeaseLost, report_from_state, report_state
from surveillance.imports.pull.bulk_client import BulkClient, manifest_read
from surveillance.imports.pull.errors import ExportGone, PullError
from surveillance.imports.report import ImportReport
from surveillance.models import EhrConnection, EhrPullRun, PullStatus
from surveillance.models.audit import AuditActor
from surveillance.models.ehr_pull import OPEN_PULL_STATUSES
from surveillance.reminders.dispatch import worker_id

logger = logging.getLogger("surveillance.imports.pull")


def _cfg(name: str):
    return settings.CARTWATCH[name]


def _lease(now: dt.datetime) -> dt.datetime:
    return now + dt.timedelta(seconds=_cfg("EHR_PULL_LEASE_SECONDS"))


@dataclass
class PullsResult:
    done: int = 0
    waiting: int = 0
    failed: int = 0
    busy: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# --- claiming -----------------------------------------------------------------------------------------------------
def pull_claim(connection: EhrConnection, token: str, now: dt.datetime | None = None) -> EhrPullRun | None:
    """Claim the connection's open run for ``token``, or open one; None when another worker holds it (or its
    export asked to be polled later)."""
    now = now or timezone.now()
    open_pk = (
        EhrPullRun.objects.filter(connection=connection, status__in=OPEN_PULL_STATUSES)
        .values_list("pk", flat=True)
        .first()
    )
    if open_pk is None:
        try:
            with transaction.atomic():
                return EhrPullRun.objects.create(
                    connection=connection,
                    status=PullStatus.RUNNING,
                    since=connection.since,
                    attempts=1,
                    claimed_by=token,
                    lease_expires_at=_lease(now),
                )
        except IntegrityError:
            return None  # another worker opened the connection's run at the same moment
    claimable = (
        Q(status=PullStatus.FAILED)
        | Q(status=PullStatus.WAITING, next_poll_at__isnull=True)
        | Q(status=PullStatus.WAITING, next_poll_at__lte=now)
        | Q(status=PullStatus.RUNNING, lease_expires_at__lt=now)
    )
    won = EhrPullRun.objects.filter(claimable, pk=open_pk).update(
        status=PullStatus.RUNNING,
        claimed_by=token,
        lease_expires_at=_lease(now),
        next_poll_at=None,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    return EhrPullRun.objects.select_related("connection__centre").get(pk=open_pk) if won else None


# --- running ------------------------------------------------------------------------------------------------------
def pulls_run() -> PullsResult:
    """Beat's run: pull every enabled connection that no other worker is pulling, one after the other."""
    result = PullsResult()
    token = f"{worker_id()}:{secrets.token_hex(4)}"[:64]
    for connection in EhrConnection.objects.filter(enabled=True).select_related("centre"):
        run = pull_claim(connection, token)
        if run is None:
            result.busy += 1
            continue
        try:
            status = pull_run(run, token)
        except LeaseLost:
            logger.warning("ehr pull run=%s taken over by another worker; stopped", run.pk)
            result.busy += 1
            continue
        except Exception as exc:
            # One connection's bug or outage must not stop the others. Its type only is logged and kept: a database
            # error's message may quote the export's values.
            logger.error("ehr pull run=%s failed: %s", run.pk, type(exc).__name__)
            _fail(run, token, f"unexpected error: {type(exc).__name__}")
            status = PullStatus.FAILED
        setattr(result, status.value, getattr(result, status.value) + 1)
    return result


def _claim_of(run: EhrPullRun, token: str):
    return EhrPullRun.objects.filter(pk=run.pk, status=PullStatus.RUNNING, claimed_by=token)


def pull_run(run: EhrPullRun, token: str) -> PullStatus:
    """Drive a claimed run as far as it goes now; returns its status (done, waiting or failed).

    Raises ``LeaseLost`` when another worker took the run over: what this one imported since is rolled back.
    """
    claim = _claim_of(run, token)
    connection = run.connection
    try:
        with BulkClient(connection) as client, audit_acting_as(AuditActor.EHR_IMPORT, f"pull:{connection.pk}"):
            if run.manifest is None and not _export_ready(run, claim, client):
                logger.info("ehr pull run=%s waiting for the export", run.pk)
                return PullStatus.WAITING
            _files_import(run, claim, client)
            _finish(run, claim)
            client.release(run.status_url)
    except ExportGone as exc:
        _fail(run, token, f"{exc}; the next pull asks for the export again", export_forget=True)
        return PullStatus.FAILED
    except PullError as exc:
        _fail(run, token, str(exc))
        return PullStatus.FAILED
    logger.info("ehr pull run=%s done: %s files, %s lines", run.pk, len(run.files), run.report.get("lines", 0))
    return PullStatus.DONE


def _save(claim, **fields) -> None:
    """Record progress on the claim, renewing its lease (``LeaseLost`` if it was taken over)."""
    now = timezone.now()
    if not claim.update(lease_expires_at=_lease(now), updated_at=now, **fields):
        raise LeaseLost("the pull's claim was taken over")


def _export_ready(run: EhrPullRun, claim, client: BulkClient) -> bool:
    """Kick the export off (unless this run already did), then poll it until it is complete (True, the manifest
    kept on the run) or this attempt's wait is spent (False: the run is left waiting for the next beat)."""
    if not run.status_url:
        run.kickoff_url, run.status_url = client.kick_off(run.since)
        _save(claim, kickoff_url=run.kickoff_url, status_url=run.status_url)
    deadline = time.monotonic() + _cfg("EHR_PULL_WAIT_SECONDS")
    while True:
        poll = client.poll(run.status_url)
        if poll.manifest is not None:
            run.transaction_time, run.files = manifest_read(poll.manifest)
            run.manifest = poll.manifest
            _save(
                claim, manifest=run.manifest, transaction_time=run.transaction_time, files=run.files, server_progress=""
            )
            return True
        if time.monotonic() + poll.retry_after > deadline:
            now = timezone.now()
            left = claim.update(
                status=PullStatus.WAITING,
                server_progress=poll.progress,
                next_poll_at=now + dt.timedelta(seconds=poll.retry_after),
                lease_expires_at=None,
                claimed_by="",
                updated_at=now,
            )
            if not left:
                raise LeaseLost("the pull's claim was taken over")
            return False
        _save(claim, server_progress=poll.progress)
        time.sleep(poll.retry_after)


@contextlib.contextmanager
def _download_folder(run: EhrPullRun) -> Iterator[Path]:
    """The run's own folder for its downloads, readable by this user only, emptied before and after each attempt:
    the files hold patient data, and what a killed worker left is removed when the run is resumed here."""
    folder = Path(tempfile.gettempdir()) / f"cartwatch-pull-{run.pk}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _files_import(run: EhrPullRun, claim, client: BulkClient) -> None:
    """Fetch and import every file not yet imported, in the manifest's import order."""
    with_token = bool(run.manifest.get("requiresAccessToken"))
    total = len(run.files)
    with _download_folder(run) as folder:
        for index, item in enumerate(run.files):
            if item["done"]:
                continue
            path = folder / f"{index}.ndjson"
            what = f"file {index + 1} of {total} ({item['type']})"
            size = client.download(item["url"], path, with_token=with_token, what=what)
            _save(claim)  # a long download renews the lease
            _file_import(run, claim, index, path)
            path.unlink()
            logger.info("ehr pull run=%s: file %s of %s imported (%s bytes)", run.pk, index + 1, total, size)


def _file_import(run: EhrPullRun, claim, index: int, path: Path) -> None:
    """Import one downloaded file after its last committed line; each batch commits with the file's progress and
    the run's report (read and written on the claim, inside the batch's transaction)."""
    start = run.files[index]["lines_done"]

    def on_batch(batch: ImportReport, last_line: int) -> None:
        row = claim.values_list("files", "report").first()
        if row is None:
            raise LeaseLost("the pull's claim was taken over")
        files, state = row
        so_far = report_from_state(state)
        so_far.merge(batch)
        so_far.lines += last_line - files[index]["lines_done"]
        files[index]["lines_done"] = last_line
        _save(claim, files=files, report=report_state(so_far))
        run.files, run.report = files, report_state(so_far)

    connection = run.connection
    with open(path, "rb") as handle:
        ehr_import.ndjson_import(
            itertools.islice(handle, start, None),
            connection.centre,
            source_system=connection.source_system,
            batch_lines=_cfg("IMPORT_BATCH_LINES"),
            start_line=start + 1,
            on_batch=on_batch,
        )
    run.files[index]["done"] = True
    _save(claim, files=run.files)


def _finish(run: EhrPullRun, claim) -> None:
    """The run is done and the connection's ``_since`` moves to the export's transactionTime, together."""
    now = timezone.now()
    with transaction.atomic():
        if not claim.update(status=PullStatus.DONE, finished_at=now, lease_expires_at=None, updated_at=now):
            raise LeaseLost("the pull's claim was taken over")
        EhrConnection.objects.filter(pk=run.connection_id).update(
            since=run.transaction_time, last_pulled_at=now, updated_at=now
        )


def _fail(run: EhrPullRun, token: str, message: str, *, export_forget: bool = False) -> None:
    """Leave the run failed with its reason (the next beat resumes it); ``export_forget``: the EHR no longer has
    the export, so the next attempt kicks off again with the same ``_since``."""
    now = timezone.now()
    forget = {"status_url": "", "manifest": None, "files": [], "transaction_time": None} if export_forget else {}
    failed = _claim_of(run, token).update(
        status=PullStatus.FAILED,
        error=message[:2000],
        failed_at=now,
        lease_expires_at=None,
        claimed_by="",
        server_progress="",
        updated_at=now,
        **forget,
    )
    if failed:
        # the step and the status code only: what follows the colon may quote the EHR's OperationOutcome
        logger.warning("ehr pull run=%s failed: %s", run.pk, message.split(":", 1)[0])
