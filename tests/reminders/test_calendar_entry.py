"""A visit's calendar entry, written line by line, is the entry the icalendar library writes for the same visit."""

from __future__ import annotations

import datetime as dt
from email.utils import parseaddr

import icalendar
from django.conf import settings as django_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.models import FollowUpVisit, Infusion, Patient, TreatmentCentre
from surveillance.reminders import messages

#: What a centre's name and address may hold: accents, the characters iCalendar escapes, long lines, line breaks.
TEXT = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40)
    | st.sampled_from([",", ";", "\\", "\\N", "^", "\n", "\r\n", "\r"]),
    max_size=12,
).map("".join)
DAYS = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))
MOMENTS = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1), timezones=st.just(dt.UTC))


def icalendar_entry(visit: FollowUpVisit, *, now: dt.datetime, cancel: bool, language: str) -> str:
    """The entry as the icalendar library builds and writes it."""
    patient = visit.infusion.patient
    organizer = parseaddr(django_settings.DEFAULT_FROM_EMAIL)[1] or "no-reply@cartwatch.invalid"
    cal = icalendar.Calendar()
    cal.add("prodid", "-//CAR-T Watch//Follow-up visits//EN")
    cal.add("version", "2.0")
    cal.add("method", "CANCEL" if cancel else "REQUEST")
    event = icalendar.Event()
    event.add("uid", visit.ics_uid())
    event.add("sequence", visit.sequence)
    event.add("dtstamp", now)
    start, end = visit.calendar_span()
    event.add("dtstart", start)
    if end is not None:
        event.add("dtend", end)
    event.add("summary", messages.CALENDAR_SUMMARY[language].format(centre=patient.centre.name))
    event.add("location", patient.centre.location())
    event.add("status", "CANCELLED" if cancel else visit.calendar_status())
    event.add("transp", "OPAQUE" if isinstance(start, dt.datetime) and not cancel else "TRANSPARENT")
    event.add("organizer", f"mailto:{organizer}")
    attendee = icalendar.vCalAddress(f"mailto:{patient.email}")
    attendee.params["RSVP"] = "FALSE"
    event.add("attendee", attendee)
    cal.add_component(event)
    return cal.to_ical().decode()


@given(
    name=TEXT.filter(str.strip),
    address=TEXT,
    email=st.emails(),
    rule_code=st.from_regex(r"[A-Z0-9_,;-]{1,60}", fullmatch=True),
    sequence=st.integers(0, 10_000),
    due=DAYS,
    booked=st.none() | st.tuples(MOMENTS, st.none() | st.timedeltas(dt.timedelta(minutes=5), dt.timedelta(hours=8))),
    booked_day=st.booleans(),
    now=MOMENTS,
    cancel=st.booleans(),
    language=st.sampled_from(["en", "es"]),
)
@settings(max_examples=300, deadline=None)
def test_it_writes_the_entry_icalendar_writes(
    name, address, email, rule_code, sequence, due, booked, booked_day, now, cancel, language
):
    centre = TreatmentCentre(name=name, address=address)
    infusion = Infusion(pk=7, patient=Patient(centre=centre, email=email))
    visit = FollowUpVisit(infusion=infusion, rule_code=rule_code, occurrence=3, sequence=sequence, due_date=due)
    if booked is not None:
        start, length = booked
        visit.booked_start, visit.booked_end = start, (start + length if length else None)
        visit.booked_for = start.date()
    elif booked_day:
        visit.booked_for = due + dt.timedelta(days=2)
    written = messages.visit_calendar(visit, now=now, cancel=cancel, language=language)
    assert written == icalendar_entry(visit, now=now, cancel=cancel, language=language)
