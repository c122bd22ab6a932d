"""A pull interrupted mid-way fails visibly and the next one resumes it: the same export, no file fetched again once
imported, no line applied twice, and ``_since`` moved only once every file is in."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from django.utils.dateparse import parse_datetime

from surveillance.imports import ehr_import
from surveillance.imports.pull import runs
from surveillance.imports.pull.health import pulls_health
from surveillance.models import EhrPullRun, FollowUpVisit, Infusion, Patient, PullStatus
from tests.imports.bulk_server import line_count

pytestmark = pytest.mark.django_db


def assert_imported_once(run: EhrPullRun, server, centre) -> None:
    """Every line of the export counted once in the run's report, and the rows it stands for stored once."""
    report = run.report
    assert report["lines"] == line_count(server.files)
    assert (report["patients_created"], report["patients_updated"], report["patients_unchanged"]) == (11, 0, 0)
    assert (report["infusions_created"], report["infusions_unchanged"]) == (4, 0)
    assert report["ignored"]["Procedure: not a CAR-T code"] == 1194
    assert Patient.objects.filter(centre=centre).count() == 11
    assert Infusion.objects.filter(patient__centre=centre).count() == 4
    assert FollowUpVisit.objects.filter(infusion__patient__centre=centre).count() == report["visits_planned"] > 0


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_it_fails_visibly_mid_download_and_the_next_pull_imports_the_rest_once(
    failure, bulk_server, make_connection, centre_a
):
    bulk_server.fail["Condition.000.ndjson"] = [failure, failure]  # both tries of the first pull
    connection = make_connection(bulk_server)
    assert runs.pulls_run().failed == 1

    run = EhrPullRun.objects.get()
    assert run.status == PullStatus.FAILED and run.failed_at is not None
    expected = "HTTP 500" if failure == "500" else "failed 2 times (ChunkedEncodingError)"
    assert run.error.startswith("file 3 of 4 (Condition): ") and expected in run.error, run.error
    assert [(item["type"], item["done"]) for item in run.files] == [
        ("Patient", True),
        ("Procedure", True),
        ("Condition", False),
        ("Encounter", False),
    ]
    assert Patient.objects.filter(centre=centre_a).count() == 11  # what was imported stays
    downloads = Path(tempfile.gettempdir()) / f"cartwatch-pull-{run.pk}"
    assert not downloads.exists()  # no patient data left on disk
    connection.refresh_from_db()
    assert connection.since is None and connection.last_pulled_at is None
    assert pulls_health()["failing"] == [connection.pk]

    downloads.mkdir()
    (downloads / "2.ndjson").write_bytes(b"what a killed worker left")
    assert runs.pulls_run().done == 1
    assert not downloads.exists()
    run.refresh_from_db()
    assert (run.status, run.attempts) == (PullStatus.DONE, 2)
    assert run.error  # the failure stays on the run, for the record
    assert len(bulk_server.kickoffs) == 1  # the same export's status URL, polled again
    assert bulk_server.downloads == {
        "Patient.000.ndjson": 1,
        "Procedure.000.ndjson": 1,
        "Condition.000.ndjson": 3,
        "Encounter.000.ndjson": 1,
    }
    assert_imported_once(run, bulk_server, centre_a)
    connection.refresh_from_db()
    assert connection.since == parse_datetime(bulk_server.transaction_times[0])
    assert pulls_health()["failing"] == []


def test_it_resumes_a_file_after_its_last_committed_batch(
    bulk_server, make_connection, centre_a, settings, monkeypatch
):
    """A worker that stops half way through a file (killed, its database gone) leaves the batches it committed; the
    next pull goes on after the last of them."""
    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_BATCH_LINES": 100}
    real_import = ehr_import.ndjson_import
    files_begun = []

    def stopping_after_250_procedure_lines(lines, *args, **kwargs):
        files_begun.append(kwargs["start_line"])
        if len(files_begun) == 2:  # the Procedure file, the first time
            real_import(itertools.islice(lines, 250), *args, **kwargs)
            raise RuntimeError("the worker stopped")
        return real_import(lines, *args, **kwargs)

    monkeypatch.setattr(ehr_import, "ndjson_import", stopping_after_250_procedure_lines)
    make_connection(bulk_server)
    assert runs.pulls_run().failed == 1
    run = EhrPullRun.objects.get()
    assert run.error == "unexpected error: RuntimeError"
    assert [item["lines_done"] for item in run.files] == [11, 250, 0, 0]

    assert runs.pulls_run().done == 1
    assert files_begun == [1, 1, 251, 1, 1]  # the Procedure file again from line 251
    run.refresh_from_db()
    assert bulk_server.downloads["Procedure.000.ndjson"] == 2
    assert_imported_once(run, bulk_server, centre_a)


def test_it_asks_again_with_the_same_since_when_the_ehr_forgot_the_export(bulk_server, make_connection):
    connection = make_connection(bulk_server)
    runs.pulls_run()
    connection.refresh_from_db()
    since = connection.since
    bulk_server.polls_before_ready = 5
    bulk_server.retry_after = 0
    bulk_server.status_gone = True
    assert runs.pulls_run().failed == 1
    run = EhrPullRun.objects.order_by("pk").last()
    assert "status URL is no longer valid (HTTP 404)" in run.error and run.status_url == ""

    bulk_server.status_gone, bulk_server.polls_before_ready = False, 0
    assert runs.pulls_run().done == 1
    assert [parse_datetime(kickoff["_since"]) for kickoff in bulk_server.kickoffs[1:]] == [since, since]


def test_it_polls_the_same_export_again_after_the_ehr_kept_answering_429(bulk_server, make_connection):
    make_connection(bulk_server)
    bulk_server.status_codes = [429, 429]  # both tries of the first pull's poll
    assert runs.pulls_run().failed == 1
    run = EhrPullRun.objects.get()
    assert run.error == "the export's status: HTTP 429: throttled" and run.status_url  # the export is still known
    assert runs.pulls_run().done == 1
    assert len(bulk_server.kickoffs) == 1
