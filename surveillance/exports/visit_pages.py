"""The bulk visit export in keyset pages, each of which says whether the export is complete.

A single response streaming every visit of a range cannot end cleanly when the server stops it (a worker
timeout): the client sees a 200 and a body that simply stops, which looks like a complete export. So the export
is read in pages, each bounded (``page_size`` rows, one indexed range query ordered by due date and id) and built
whole before it is sent, with its length:

- every page ends with one marker line (newline included),
  ``{"resourceType": "ExportPage", "complete": ..., "count": ...}``; a page with more to come says
  ``"complete": false`` and carries the ``next`` URL (also sent as ``Link: <...>; rel="next"``), the last page
  says ``"complete": true``;
- a body cut short (a dropped connection) does not end with a whole marker line, and is shorter than its
  ``Content-Length``.

The export is complete when, and only when, the last page fetched ends with a whole marker line (newline included)
saying so. The cursor names the last row sent (due date and id), so a visit added or moved meanwhile never
shifts a page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from surveillance.exports.fhir_export import visits_ndjson
from surveillance.models import FollowUpVisit

MARKER_TYPE = "ExportPage"
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000


@dataclass(frozen=True)
class VisitCursor:
    """The last row a page sent: the next page starts after it in (due date, id) order."""

    due_date: dt.date
    pk: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.due_date.isoformat()}_{self.pk}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> VisitCursor:
        """Raises ``ValueError`` for anything but a cursor this module made."""
        try:
            text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
            day, pk = text.split("_")
            cursor = cls(dt.date.fromisoformat(day), int(pk))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError("not a cursor of this export") from exc
        if cursor.pk <= 0 or not pk.isdigit():
            raise ValueError("not a cursor of this export")
        return cursor


@dataclass(frozen=True)
class VisitsPage:
    visits: list[FollowUpVisit]
    #: Where the next page starts; None on the last page.
    next_cursor: VisitCursor | None

    @property
    def complete(self) -> bool:
        return self.next_cursor is None

    def ndjson(self, next_url: str | None) -> bytes:
        """The page's rows, then its marker line (``next_url`` is the URL of the next page, if there is one)."""
        marker: dict = {"resourceType": MARKER_TYPE, "complete": self.complete, "count": len(self.visits)}
        if not self.complete:
            marker["next"] = next_url
        rows = b"".join(visits_ndjson(self.visits))
        return rows + json.dumps(marker, separators=(",", ":")).encode() + b"\n"


def visits_page(visits: QuerySet[FollowUpVisit], *, after: VisitCursor | None, size: int) -> VisitsPage:
    """Up to ``size`` visits of ``visits`` after the cursor, in (due date, id) order, and whether more follow."""
    if after is not None:
        visits = visits.filter(Q(due_date__gt=after.due_date) | Q(due_date=after.due_date, pk__gt=after.pk))
    rows = list(visits.select_related("infusion__patient").order_by("due_date", "pk")[: size + 1])
    if len(rows) <= size:
        return VisitsPage(rows, None)
    rows = rows[:size]
    return VisitsPage(rows, VisitCursor(rows[-1].due_date, rows[-1].pk))
