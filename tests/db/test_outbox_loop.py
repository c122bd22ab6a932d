"""The run loop both outboxes share: batches until one finds nothing or the budget is spent, at least one."""

from __future__ import annotations

import re

from surveillance.db.outbox_loop import outbox_batches, worker_id


def test_it_runs_batches_until_one_handles_nothing():
    pending = [3, 2, 0, 5]
    handled = list(outbox_batches(lambda: pending.pop(0), handled=int, budget_seconds=60))
    assert handled == [3, 2, 0] and pending == [5]


def test_it_stops_at_the_budget_but_always_runs_one_batch():
    calls = []

    def batch() -> int:
        calls.append(1)
        return 10

    assert list(outbox_batches(batch, handled=int, budget_seconds=0)) == [10]
    assert len(calls) == 1


def test_it_reads_what_a_batch_handled_from_its_result():
    results = [{"handled": 4}, {"handled": 0}, {"handled": 9}]
    ran = list(outbox_batches(lambda: results.pop(0), handled=lambda r: r["handled"], budget_seconds=60))
    assert ran == [{"handled": 4}, {"handled": 0}]


def test_it_names_a_worker_by_host_and_pid_within_a_claim_column():
    name = worker_id()
    assert re.fullmatch(r".{1,40}:\d+", name) and len(name) <= 64
