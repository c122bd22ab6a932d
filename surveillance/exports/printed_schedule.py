"""A patient's schedule on paper: the visits to come, in the patient's language, with the centre's details.

For a patient without email, or one who would rather have paper, the coordinator prints it at the desk or posts
it. It is made of the same facts as the reminder emails (``reminders.messages``): the centre's name, address,
phone and opening hours, each visit's due date and the first and last open days of its window. Minimum
necessary, as in the emails: no diagnosis, product or record number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from surveillance.models import FollowUpVisit, Patient, VisitStatus
from surveillance.reminders.messages import long_date, patient_language

#: Enough visits to cover the next years of any protocol without making the page run over several sheets.
SCHEDULE_VISITS = 12


@dataclass(frozen=True)
class ScheduledDay:
    due_date: str
    window_start: str
    window_end: str


@dataclass(frozen=True)
class PrintedSchedule:
    language: str
    patient_name: str
    centre: str
    centre_address: list[str]
    centre_phone: str
    centre_hours: str
    printed_on: str
    visits: list[ScheduledDay]
    closed: bool  # follow-up has ended: the page says so instead of listing visits


def printed_schedule(patient: Patient, today: dt.date) -> PrintedSchedule:
    """The patient's next visits still to come (window not closed yet), in due-date order."""
    language = patient_language(patient)
    centre = patient.centre
    calendar = centre.calendar()
    visits = (
        FollowUpVisit.objects.filter(
            infusion__patient=patient,
            infusion__superseded_by__isnull=True,
            status=VisitStatus.SCHEDULED,
            window_end__gte=today,
        )
        .order_by("due_date", "pk")
        .only("due_date", "window_start", "window_end")[:SCHEDULE_VISITS]
    )
    days = []
    for visit in visits:
        first_open, last_open = calendar.open_bounds(max(visit.window_start, today), visit.window_end)
        days.append(
            ScheduledDay(
                due_date=long_date(visit.due_date, language),
                window_start=long_date(first_open, language),
                window_end=long_date(last_open, language),
            )
        )
    return PrintedSchedule(
        language=language,
        patient_name=" ".join(part for part in (patient.given_name, patient.family_name) if part),
        centre=centre.name,
        centre_address=[line.strip() for line in centre.address.splitlines() if line.strip()],
        centre_phone=centre.phone,
        centre_hours=centre.opening_hours,
        printed_on=long_date(today, language),
        visits=days,
        closed=not patient.under_follow_up,
    )
