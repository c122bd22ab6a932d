"""A pull from a loopback EHR: the export is kicked off, polled as the EHR asks, fetched with the bearer token and
imported Patients first; the connection's ``_since`` moves to the export's transactionTime only then."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from surveillance.imports.pull import runs
from surveillance.models import EhrPullRun, Infusion, Patient, PullStatus
from surveillance.models.ehr_pull import DEFAULT_RESOURCE_TYPES
from tests.imports.bulk_server import line_count

pytestmark = pytest.mark.django_db


def test_it_imports_the_patients_and_infusions_of_a_full_export(bulk_server, make_connection, centre_a):
    make_connection(bulk_server)
    assert runs.pulls_run().as_dict() == {"done": 1, "waiting": 0, "failed": 0, "busy": 0}
    run = EhrPullRun.objects.get()
    assert run.status == PullStatus.DONE
    assert Patient.objects.filter(centre=centre_a).count() == 11
    assert Infusion.objects.filter(patient__centre=centre_a).count() == 4
    assert Patient.objects.filter(centre=centre_a, status="deceased").count() == 2
    report = run.report
    assert (report["patients_created"], report["infusions_created"], report["patients_closed"]) == (11, 4, 2)
    assert report["lines"] == line_count(bulk_server.files)
    assert report["ignored"]["Procedure: not a CAR-T code"] == 1194  # the export's chemotherapy etc.
    # the manifest lists Patient last; Patients are imported first, as the infusions refer to them
    assert [item["type"] for item in run.files] == ["Patient", "Procedure", "Condition", "Encounter"]
    assert all(item["done"] for item in run.files)
    assert set(bulk_server.downloads.values()) == {1}
    assert bulk_server.released == ["/status/1"]  # the EHR may drop the files once they are in
    kickoff = bulk_server.kickoffs[0]
    assert kickoff["path"] == "/fhir/Patient/$export"
    assert kickoff["_type"] == ",".join(DEFAULT_RESOURCE_TYPES)
    assert "_since" not in kickoff  # the first pull asks for everything


def test_it_moves_since_to_the_transaction_time_and_asks_for_changes_since_then(bulk_server, make_connection):
    connection = make_connection(bulk_server)
    runs.pulls_run()
    connection.refresh_from_db()
    exported_at = parse_datetime(bulk_server.transaction_times[0])
    assert connection.since == exported_at
    assert timezone.now() - connection.last_pulled_at < dt.timedelta(minutes=1)

    assert runs.pulls_run().done == 1
    assert parse_datetime(bulk_server.kickoffs[1]["_since"]) == exported_at
    second = EhrPullRun.objects.order_by("pk").last()
    assert second.since == exported_at
    assert (second.report["patients_created"], second.report["patients_unchanged"]) == (0, 11)
    connection.refresh_from_db()
    assert connection.since == parse_datetime(bulk_server.transaction_times[1]) > exported_at


def test_it_waits_as_long_as_the_export_asks(bulk_server, make_connection):
    bulk_server.polls_before_ready, bulk_server.retry_after = 2, 1
    make_connection(bulk_server)
    assert runs.pulls_run().done == 1
    assert len(bulk_server.polls) == 3
    gaps = [later - earlier for earlier, later in zip(bulk_server.polls, bulk_server.polls[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps


def test_it_leaves_an_export_still_being_prepared_for_the_next_beat(bulk_server, make_connection, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "EHR_PULL_WAIT_SECONDS": 1}
    bulk_server.polls_before_ready, bulk_server.retry_after = 2, 5
    make_connection(bulk_server)
    assert runs.pulls_run().waiting == 1
    run = EhrPullRun.objects.get()
    assert (run.status, run.server_progress, run.claimed_by) == (PullStatus.WAITING, "preparing the export", "")
    assert run.next_poll_at > timezone.now()
    assert runs.pulls_run().busy == 1  # the EHR asked for five seconds: the next beat does not poll before
    assert len(bulk_server.polls) == 1

    for expected in ("waiting", "done"):
        EhrPullRun.objects.update(next_poll_at=timezone.now())
        assert getattr(runs.pulls_run(), expected) == 1
    assert len(bulk_server.kickoffs) == 1  # the same export, polled again
    assert Patient.objects.count() == 11


def test_it_exports_the_group_a_connection_names(bulk_server, make_connection):
    make_connection(bulk_server, group_id="car-t-cohort", resource_types=["Patient", "Procedure"])
    runs.pulls_run()
    kickoff = bulk_server.kickoffs[0]
    assert (kickoff["path"], kickoff["_type"]) == ("/fhir/Group/car-t-cohort/$export", "Patient,Procedure")
