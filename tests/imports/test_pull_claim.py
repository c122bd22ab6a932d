"""One worker pulls a connection at a time: the claim on its run is a compare-and-set, and the database holds at
most one open run per connection. Beat asks for the pulls on its schedule."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django import db
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveillance.imports.jobs import LeaseLost
from surveillance.imports.pull import runs
from surveillance.imports.tasks import pull_ehr_connections
from surveillance.models import EhrPullRun, PullStatus

pytestmark = pytest.mark.django_db


def test_it_gives_a_second_claim_nothing_while_the_first_holds_the_run(bulk_server, make_connection):
    connection = make_connection(bulk_server)
    first = runs.pull_claim(connection, "worker-1")
    assert first is not None and (first.status, first.claimed_by) == (PullStatus.RUNNING, "worker-1")
    assert runs.pull_claim(connection, "worker-2") is None
    assert runs.pulls_run().busy == 1  # a second beat's run
    assert EhrPullRun.objects.count() == 1 and bulk_server.kickoffs == []


@pytest.mark.django_db(transaction=True)
def test_it_lets_one_of_two_workers_claiming_at_the_same_moment_win(bulk_server, make_connection):
    """Two beats' workers, each on its own database connection, claim the never-pulled connection at once."""
    connection = make_connection(bulk_server)
    start = threading.Barrier(2)
    claims: list = []

    def claim(token: str) -> None:
        try:
            start.wait(timeout=10)
            claims.append(runs.pull_claim(connection, token))
        finally:
            db.connection.close()

    workers = [threading.Thread(target=claim, args=(f"worker-{n}",)) for n in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len(claims) == 2
    assert len([run for run in claims if run is not None]) == 1
    assert EhrPullRun.objects.count() == 1


def test_it_refuses_a_second_open_run_for_a_connection(bulk_server, make_connection):
    """Two workers that both found no open run and open one at once: the second insert is refused."""
    connection = make_connection(bulk_server)
    runs.pull_claim(connection, "worker-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        EhrPullRun.objects.create(connection=connection, status=PullStatus.FAILED)


def test_it_takes_over_a_run_whose_worker_stopped_renewing_its_lease(bulk_server, make_connection):
    connection = make_connection(bulk_server)
    stale = runs.pull_claim(connection, "worker-1")
    EhrPullRun.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    taken = runs.pull_claim(connection, "worker-2")
    assert taken.pk == stale.pk and (taken.claimed_by, taken.attempts) == ("worker-2", 2)
    with pytest.raises(LeaseLost):
        runs.pull_run(stale, "worker-1")  # the first worker's next step finds its claim gone
    assert runs.pull_run(taken, "worker-2") == PullStatus.DONE


def test_it_claims_a_failed_run_again_rather_than_opening_another(bulk_server, make_connection):
    connection = make_connection(bulk_server)
    run = runs.pull_claim(connection, "worker-1")
    EhrPullRun.objects.filter(pk=run.pk).update(status=PullStatus.FAILED, lease_expires_at=None, claimed_by="")
    again = runs.pull_claim(connection, "worker-2")
    assert again.pk == run.pk and again.attempts == 2


def test_it_pulls_only_enabled_connections(bulk_server, make_connection):
    make_connection(bulk_server, enabled=False)
    assert runs.pulls_run().as_dict() == {"done": 0, "waiting": 0, "failed": 0, "busy": 0}
    assert bulk_server.token_requests == 0


def test_it_is_on_the_beat_schedule_at_the_configured_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["pull-ehr-connections"]
    assert entry["task"] == pull_ehr_connections.name
    assert entry["schedule"] == entry["options"]["expires"] == 3600.0
