"""What the two outboxes (reminders, webhooks) share: who a worker is, and the shape of a run.

Both outboxes are rows claimed by compare-and-set with a lease. A run takes back the leases of dead workers, then
handles one batch after another until a batch finds nothing due or the time budget is spent (a Celery task must
end before the next beat); the first batch always runs, so a run makes progress however small its budget. That
loop (``outbox_batches``) and the name a worker signs its claims with (``worker_id``) are written here once.

The claim and the lease recovery stay with each outbox, on purpose. The reminder dispatcher's are tuned for a
mail server that may have accepted a message before a worker died: it claims with ``SKIP LOCKED`` and counts the
attempt at claim time, and its recovery decides row by row, from the hand-off markers, whether a re-send is an
ordinary one or a possible double to flag. A webhook has none of that (a receiver drops a repeat by its delivery
id): one statement recovers its leases. A recovery general enough for both would be the reminder's, imposed on
webhooks, or a weaker one, imposed on reminders.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

Result = TypeVar("Result")


def worker_id() -> str:
    """This process, as recorded on its claims: host and pid (fits the 64 characters of a ``claimed_by``)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def outbox_batches(
    batch: Callable[[], Result], *, handled: Callable[[Result], int], budget_seconds: float
) -> Iterator[Result]:
    """Run ``batch`` again and again, yielding each result, until ``handled(result)`` is 0 or the budget is spent.

    The budget is checked after each batch, never in the middle of one: a batch that has claimed rows finishes
    them (their leases are sized for it).
    """
    stop_at = time.monotonic() + budget_seconds
    while True:
        result = batch()
        yield result
        if not handled(result) or time.monotonic() >= stop_at:
            return
