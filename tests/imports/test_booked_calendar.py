"""A visit the EHR booked is a confirmed calendar entry: the patient email's attachment and the calendar feeds
carry the Appointment's day (its hours, when it gave them) with STATUS:CONFIRMED; a visit not booked stays a
tentative all-day entry on its due day, and a cancelled appointment takes the booking, and its hours, back."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from surveillance.api.auth import api_token_create
from surveillance.imports import ehr_import
from surveillance.models import Reminder
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import messages
from tests.imports.test_visits_reconciled import INFUSED, SYNTHEA_ORG, export, visit

pytestmark = pytest.mark.django_db
BOOKED_DAY = INFUSED + dt.timedelta(days=160)  # inside month 6's window
START = dt.datetime.combine(BOOKED_DAY, dt.time(9, 30), tzinfo=dt.timezone(dt.timedelta(hours=-5)))


@pytest.fixture
def centre(centre_a):
    centre_a.ehr_site_identifiers = f"{SYNTHEA_ORG}\n"
    centre_a.save()
    return centre_a


@pytest.fixture
def feed(centre) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create('epic-a', [centre])[1]}")
    return client


def appointment(status: str = "booked", **times: str) -> dict:
    """An Appointment as an EHR exports it; ``times`` replaces its start and end (a day alone, say)."""
    return {
        "resourceType": "Appointment",
        "id": "appt-160",
        "status": status,
        "start": f"{BOOKED_DAY.isoformat()}T09:30:00-05:00",
        "end": f"{BOOKED_DAY.isoformat()}T10:00:00-05:00",
        "participant": [{"actor": {"reference": "Patient/syn-7"}, "status": "accepted"}],
        **times,
    }


def attachment_event(rule_code: str) -> icalendar.Event:
    """The calendar entry of the visit's next patient reminder, as the patient's mail client reads it."""
    reminder = Reminder.objects.filter(
        visit=visit(rule_code), audience=Audience.PATIENT, purpose=Purpose.UPCOMING
    ).first()
    mail = messages.reminder_message(reminder, now=timezone.now()).message()
    part = next(p for p in mail.walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]


def feed_events(client: APIClient, path: str) -> dict[str, icalendar.Event]:
    response = client.get(path)
    assert response.status_code == 200, response.content
    return {str(e["UID"]): e for e in icalendar.Calendar.from_ical(response.content).walk("VEVENT")}


def test_it_confirms_the_booked_hours_in_the_email_and_in_both_feeds(centre, feed):
    ehr_import.bundle_import(export(appointment()), centre)
    m6 = visit("M6")
    assert (m6.booked_start, m6.booked_end) == (START, START + dt.timedelta(minutes=30))
    event = attachment_event("M6")
    assert (event.decoded("DTSTART"), event.decoded("DTEND")) == (START, START + dt.timedelta(minutes=30))
    assert (str(event["STATUS"]), str(event["TRANSP"])) == ("CONFIRMED", "OPAQUE")
    for path in (
        f"/api/v1/patients/{m6.infusion.patient_id}/calendar.ics",
        f"/api/v1/centres/{centre.pk}/calendar.ics",
    ):
        entry = feed_events(feed, path)[m6.ics_uid()]
        assert (entry.decoded("DTSTART"), entry.decoded("DTEND"), str(entry["STATUS"])) == (
            START,
            START + dt.timedelta(minutes=30),
            "CONFIRMED",
        )


def test_it_confirms_the_whole_booked_day_when_the_appointment_gives_no_hours(centre, feed):
    ehr_import.bundle_import(export(appointment(start=BOOKED_DAY.isoformat(), end=BOOKED_DAY.isoformat())), centre)
    m6 = visit("M6")
    assert (m6.booked_for, m6.booked_start, m6.booked_end) == (BOOKED_DAY, None, None)
    assert m6.due_date != BOOKED_DAY  # the entry moved from the due day to the booked one
    event = attachment_event("M6")
    assert (event.decoded("DTSTART"), event.decoded("DTEND")) == (BOOKED_DAY, BOOKED_DAY + dt.timedelta(days=1))
    assert (str(event["STATUS"]), str(event["TRANSP"])) == ("CONFIRMED", "TRANSPARENT")
    entry = feed_events(feed, f"/api/v1/patients/{m6.infusion.patient_id}/calendar.ics")[m6.ics_uid()]
    assert (entry.decoded("DTSTART"), str(entry["STATUS"])) == (BOOKED_DAY, "CONFIRMED")


def test_it_keeps_a_visit_not_booked_tentative_on_its_due_day_and_takes_a_cancelled_booking_back(centre, feed):
    ehr_import.bundle_import(export(appointment()), centre)
    ehr_import.bundle_import(export(appointment("cancelled")), centre)
    m6 = visit("M6")
    assert (m6.booked_for, m6.booked_start, m6.booked_end) == (None, None, None)
    event = attachment_event("M6")
    assert (event.decoded("DTSTART"), event.decoded("DTEND"), str(event["STATUS"])) == (
        m6.due_date,
        m6.due_date + dt.timedelta(days=1),
        "TENTATIVE",
    )
    entries = feed_events(feed, f"/api/v1/patients/{m6.infusion.patient_id}/calendar.ics")
    assert (entries[m6.ics_uid()].decoded("DTSTART"), str(entries[m6.ics_uid()]["STATUS"])) == (
        m6.due_date,
        "TENTATIVE",
    )


def test_it_renders_the_email_again_when_the_booked_hours_change(centre):
    ehr_import.bundle_import(export(appointment()), centre)
    reminder = Reminder.objects.filter(visit=visit("M6"), audience=Audience.PATIENT).first()
    before = messages.reminder_fingerprint(reminder)
    later = appointment(
        start=f"{BOOKED_DAY.isoformat()}T11:00:00-05:00", end=f"{BOOKED_DAY.isoformat()}T11:30:00-05:00"
    )
    ehr_import.bundle_import(export(later), centre)
    reminder = Reminder.objects.get(pk=reminder.pk)
    assert visit("M6").booked_start == START + dt.timedelta(minutes=90)
    assert messages.reminder_fingerprint(reminder) != before
