"""A visit is due on a day the clinic is open: weekends, public holidays and the clinic's own closures avoided,
always inside the visit's window."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from surveillance.scheduling.clinic_calendar import ALWAYS_OPEN, WEEKEND, ClinicCalendar, visits_on_open_days
from surveillance.scheduling.engine import NO_REMINDERS, PlannedVisit, VisitKind

D = dt.date


def visit(due: dt.date, before: int = 14, after: int = 14, kind: str = VisitKind.CLINIC) -> PlannedVisit:
    return PlannedVisit(
        rule_code="M6",
        occurrence=1,
        label="Month 6",
        kind=kind,
        due_date=due,
        window_start=due - dt.timedelta(days=before),
        window_end=due + dt.timedelta(days=after),
        assessments=(),
        reminders=NO_REMINDERS,
    )


def test_it_moves_a_saturday_to_the_friday_before_and_a_sunday_to_the_monday_after():
    calendar = ClinicCalendar(closed_weekdays=WEEKEND)
    saturday, sunday = D(2026, 11, 7), D(2026, 11, 8)
    [sat, sun] = visits_on_open_days([visit(saturday), visit(sunday)], calendar)
    assert sat.due_date == D(2026, 11, 6)
    assert sun.due_date == D(2026, 11, 9)
    assert (sat.window_start, sat.window_end) == (saturday - dt.timedelta(days=14), saturday + dt.timedelta(days=14))


def test_it_avoids_the_public_holidays_of_the_centres_country_and_region():
    us = ClinicCalendar(country="US", subdivision="NY", closed_weekdays=WEEKEND)
    christmas = D(2026, 12, 25)  # a Friday
    assert us.is_closed(christmas)
    assert visits_on_open_days([visit(christmas)], us)[0].due_date == D(2026, 12, 24)
    madrid = ClinicCalendar(country="ES", subdivision="MD")
    assert madrid.is_closed(D(2026, 12, 7))  # Madrid keeps Constitution Day (a Sunday) on the Monday after
    assert not ClinicCalendar(country="ES").is_closed(D(2026, 12, 7))


def test_it_avoids_the_clinics_own_closures():
    calendar = ClinicCalendar(closed_weekdays=WEEKEND, closures=frozenset({D(2026, 11, 4), D(2026, 11, 3)}))
    assert visits_on_open_days([visit(D(2026, 11, 4))], calendar)[0].due_date == D(2026, 11, 5)


def test_it_keeps_the_day_when_the_whole_window_is_closed():
    closed = frozenset(D(2026, 11, 1) + dt.timedelta(days=n) for n in range(10))
    calendar = ClinicCalendar(closed_weekdays=WEEKEND, closures=closed)
    assert visits_on_open_days([visit(D(2026, 11, 5), before=2, after=2)], calendar)[0].due_date == D(2026, 11, 5)


def test_it_never_moves_the_infusion_or_the_acute_visits():
    sunday = D(2026, 11, 8)
    kept = visits_on_open_days(
        [visit(sunday, kind=VisitKind.INFUSION), visit(sunday, kind=VisitKind.ACUTE)], ALWAYS_OPEN
    )
    assert [v.due_date for v in kept] == [sunday, sunday]
    assert [
        v.due_date
        for v in visits_on_open_days([visit(sunday, kind=VisitKind.ACUTE)], ClinicCalendar(closed_weekdays=WEEKEND))
    ] == [sunday]


def test_it_names_the_first_and_last_open_days_of_a_window():
    calendar = ClinicCalendar(closed_weekdays=WEEKEND)
    assert calendar.open_bounds(D(2026, 11, 7), D(2026, 11, 15)) == (D(2026, 11, 9), D(2026, 11, 13))


@given(
    due=st.dates(min_value=D(2020, 1, 1), max_value=D(2040, 12, 31)),
    before=st.integers(min_value=0, max_value=30),
    after=st.integers(min_value=0, max_value=30),
)
def test_it_always_lands_on_an_open_day_inside_the_window_when_there_is_one(due, before, after):
    calendar = ClinicCalendar(country="US", subdivision="NY", closed_weekdays=WEEKEND)
    planned = visit(due, before, after)
    moved = visits_on_open_days([planned], calendar)[0]
    assert planned.window_start <= moved.due_date <= planned.window_end
    first_open, last_open = calendar.open_bounds(planned.window_start, planned.window_end)
    if not calendar.is_closed(first_open):
        assert not calendar.is_closed(moved.due_date)
        assert abs((moved.due_date - due).days) <= max(abs((first_open - due).days), abs((last_open - due).days))
