"""A patient message says how to book: the centre's phone, address and hours, in the text, the HTML and the .ics."""

from __future__ import annotations

import datetime as dt

import icalendar
import pytest

from surveillance.reminders import messages
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC)


@pytest.fixture
def centre_details(centre_a):
    centre_a.phone = "+1 212 555 0100"
    centre_a.address = "Cell Therapy Clinic, 4th floor\n525 East 68th Street\nNew York, NY 10065"
    centre_a.opening_hours = "Mon-Fri 8:00-16:00"
    centre_a.save()
    return centre_a


def _calendar(message) -> icalendar.Event:
    part = next(p for p in message.message().walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]


def test_it_asks_the_patient_to_call_and_book_a_day_in_the_window(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details), NOW.date())
    mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert "To book it, please call us at +1 212 555 0100 and choose a day between" in mail.body
    assert "is fine if that date does not suit you" not in mail.body
    html = mail.alternatives[0][0]
    assert 'href="tel:+1 212 555 0100"' in html


def test_it_signs_with_the_address_phone_and_hours(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details), NOW.date())
    mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    for line in ("525 East 68th Street", "New York, NY 10065", "Phone: +1 212 555 0100", "Mon-Fri 8:00-16:00"):
        assert line in mail.body
    html = mail.alternatives[0][0]
    for line in ("<br>525 East 68th Street", "<br>New York, NY 10065", ">+1 212 555 0100</a>", "Mon-Fri 8:00-16:00"):
        assert line in html


def test_it_says_whom_to_contact_when_the_centre_has_no_phone(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert f"To book it, please contact {centre_a.name} and choose a day between" in mail.body
    assert "Phone:" not in mail.body


def test_it_writes_the_booking_line_in_spanish(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details, preferred_language="es"), NOW.date())
    mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert "Para pedir cita, llámenos al +1 212 555 0100 y elija un día entre el" in mail.body
    assert "Teléfono: +1 212 555 0100" in mail.body and "Horario de atención: Mon-Fri 8:00-16:00" in mail.body


def test_it_puts_the_address_in_the_calendar_entry_as_a_day_to_book(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details), NOW.date())
    event = _calendar(messages.reminder_message(add_reminder(visit, NOW), now=NOW))
    assert str(event["LOCATION"]) == (
        "Centre A, Cell Therapy Clinic, 4th floor, 525 East 68th Street, New York, NY 10065"
    )
    assert str(event["STATUS"]) == "TENTATIVE"


def test_it_renders_again_when_the_centre_changes_its_number(centre_details, make_patient, open_visit):
    reminder = add_reminder(open_visit(make_patient(centre_details), NOW.date()), NOW)
    before = messages.reminder_fingerprint(reminder)
    centre_details.phone = "+1 212 555 0199"
    centre_details.save()
    reminder.visit.infusion.patient.centre = centre_details
    assert messages.reminder_fingerprint(reminder) != before


def test_it_names_only_days_the_clinic_is_open(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details), NOW.date())
    visit.window_start, visit.window_end = dt.date(2026, 11, 1), dt.date(2026, 11, 29)  # a Sunday to a Sunday
    visit.save()
    centre_details.country, centre_details.subdivision, centre_details.closed_weekdays = "US", "NY", [5, 6]
    centre_details.save()
    mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert "between Monday, November 2, 2026 and Friday, November 27, 2026" in mail.body  # 28-29: a weekend


def test_it_renders_again_when_the_clinic_closes_a_day_of_the_window(centre_details, make_patient, open_visit):
    visit = open_visit(make_patient(centre_details), NOW.date())
    reminder = add_reminder(visit, NOW)
    before = messages.reminder_fingerprint(reminder)
    centre_details.closures.create(day=visit.window_start)
    centre_details.closures_changed()
    assert messages.reminder_fingerprint(reminder) != before
