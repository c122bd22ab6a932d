"""What the dispatcher needs of a channel: the one interface every sender (email, SMS, letter task) implements.

The dispatcher (``dispatch``) owns everything that makes a reminder go out once: the claim, the lease, the
hand-off markers, the re-check, retries and outcomes. A transport only builds a reminder's payload and hands it
over, saying with a ``SendError`` how a hand-over failed. Adding a channel is adding a transport, not a loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from surveillance.models import Reminder


@dataclass(frozen=True)
class SendError:
    """How a hand-over failed. ``code``: the server's or provider's code (SMTP reply, HTTP status), if any."""

    code: int | None
    text: str
    temporary: bool
    #: The server may have accepted the message before the error (no answer to the end of DATA, a lost response).
    maybe_accepted: bool = False


class TransportError(Exception):
    """A hand-over failed; ``error`` says how (never with an address or a number in its text)."""

    def __init__(self, error: SendError) -> None:
        super().__init__(error.text)
        self.error = error


class Unsendable(Exception):
    """The reminder's payload cannot be made (an address the channel cannot take, a template error): it fails for
    good, since it would fail again at every lease."""


class Transport(Protocol):
    #: Why the batch waits when the transport cannot be reached at all (``/health/`` looks for the mail one).
    unreachable: str
    #: Why the rest of a batch is given back when the connection drops midway.
    lost: str
    #: Seconds one hand-over may take at most (the dispatcher keeps that much of the lease in hand).
    timeout: float
    #: The code recorded on an accepted hand-over (SMTP's 250; None where the provider gives none).
    accepted_code: int | None

    def open(self) -> None:
        """Connect before any marker is written; raises ``OSError`` when the server cannot be reached."""

    def build(self, reminder: Reminder, now: dt.datetime) -> Any:
        """The payload of one reminder, ready to hand over; raises ``Unsendable``."""

    def ready(self) -> bool:
        """Whether the transport can hand over now, reconnecting if an error closed it."""

    def send(self, reminder: Reminder, payload: Any, settle: Callable[[], None]) -> str:
        """Hand one payload over; returns the provider's id of the message ("" if none). Raises
        ``TransportError``. ``settle`` records the earlier message's outcome (``sent_marks``): it is called at the
        last moment this hand-over can still be taken back (for SMTP, between the 354 and the message; for an
        HTTP request, before it), and an error it raises is let through, with nothing handed over."""

    def close(self) -> None:
        """Let go of the connection (errors ignored)."""
