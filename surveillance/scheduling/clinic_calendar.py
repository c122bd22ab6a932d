"""When a clinic is open: its weekly closed days, the public holidays of its country and region, its own closures.

Pure, like the engine: the planner builds a :class:`ClinicCalendar` from a centre's settings and moves each planned
visit's due date to the nearest open day inside its window (:func:`visits_on_open_days`), and messages name the
first and last open days of a window (:meth:`ClinicCalendar.open_bounds`), so a patient is never asked to come on a
day the clinic is closed. Holidays come from the ``holidays`` package (by ISO 3166 country and subdivision code).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

import holidays

from surveillance.scheduling.engine import KIND_WITHOUT_REMINDERS, PlannedVisit

#: Monday is 0: Saturday and Sunday.
WEEKEND = (5, 6)


@dataclass(frozen=True)
class ClinicCalendar:
    """Closed on ``closed_weekdays``, on the public holidays of ``country``/``subdivision`` and on ``closures``."""

    country: str = ""
    subdivision: str = ""
    closed_weekdays: tuple[int, ...] = ()
    closures: frozenset[dt.date] = field(default_factory=frozenset)

    @cached_property
    def _holidays(self) -> holidays.HolidayBase | None:
        if not self.country:
            return None
        return holidays.country_holidays(self.country, subdiv=self.subdivision or None)

    def is_closed(self, day: dt.date) -> bool:
        if day.weekday() in self.closed_weekdays or day in self.closures:
            return True
        return self._holidays is not None and day in self._holidays

    def nearest_open(self, day: dt.date, start: dt.date, end: dt.date) -> dt.date:
        """The open day closest to ``day`` within ``start``..``end`` (the earlier one on a tie); ``day`` itself when
        the whole window is closed, since a visit must still be due somewhere."""
        if not self.is_closed(day):
            return day
        for distance in range(1, (end - start).days + 1):
            for candidate in (day - dt.timedelta(days=distance), day + dt.timedelta(days=distance)):
                if start <= candidate <= end and not self.is_closed(candidate):
                    return candidate
        return day

    def open_bounds(self, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
        """The first and last open days of a window (the window itself when no day in it is open).

        Looked for from each end: every message asks, and the ends of a window are nearly always open, so this
        usually looks at two days rather than every day of a window weeks long."""
        days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
        first = next((day for day in days if not self.is_closed(day)), None)
        if first is None:
            return start, end
        return first, next(day for day in reversed(days) if not self.is_closed(day))


ALWAYS_OPEN = ClinicCalendar()


def visits_on_open_days(visits: Iterable[PlannedVisit], calendar: ClinicCalendar) -> list[PlannedVisit]:
    """Each visit due on a closed day moved to the nearest open day of its window; its window stays.

    The infusion day, the baseline and the acute visits of the first weeks are facts of the treatment (often an
    inpatient stay), not appointments to book, so they keep their day."""
    if calendar == ALWAYS_OPEN:  # no day is closed: nothing moves
        return list(visits)
    moved = []
    for visit in visits:
        if visit.kind not in KIND_WITHOUT_REMINDERS:
            day = calendar.nearest_open(visit.due_date, visit.window_start, visit.window_end)
            if day != visit.due_date:
                visit = replace(visit, due_date=day)
        moved.append(visit)
    return moved
