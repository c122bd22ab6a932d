"""What a reminder says: the minimum necessary, a calendar entry that follows the visit, and working links."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.care import lifecycle
from surveillance.models import Reminder, ReminderStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import dispatch, messages
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def _calendar(message) -> icalendar.Calendar:
    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_content()), part


def test_it_says_the_minimum_necessary(centre_a, make_patient, open_visit):
    patient = make_patient(centre_a, mrn="MRN-SECRET-77", given_name="Ximena")
    visit = open_visit(patient, NOW.date())
    visit.infusion.indication = "Diffuse large B-cell lymphoma"
    visit.infusion.save()
    email = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    everything = email.message().as_string() + email.alternatives[0][0]
    for secret in ("MRN-SECRET-77", "lymphoma", visit.infusion.product.brand, visit.infusion.product.generic_name):
        assert secret.lower() not in everything.lower()
    assert centre_a.name in email.body and "Saturday, November 7, 2026" in email.body
    assert email.subject == "Reminder: your follow-up visit on Saturday, November 7, 2026"

    care = messages.reminder_message(
        add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE), now=NOW
    )
    assert care.subject == f"Overdue visit: patient {patient.pk}"
    assert "MRN-SECRET-77" not in care.message().as_string() and "Ximena" not in care.message().as_string()
    assert f"/admin/surveillance/followupvisit/{visit.pk}/change/" in care.body


def test_it_writes_in_the_patients_language(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a, preferred_language="es"), NOW.date())
    email = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert email.subject == "Recordatorio: su visita de seguimiento el sábado 7 de noviembre de 2026"
    assert "Para pedir cita" in email.body and "Para pedir cita" in email.alternatives[0][0]


def test_it_offers_one_click_unsubscribe_on_routine_reminders_only(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    patient_mail = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert patient_mail.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert patient_mail.extra_headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    escalation = messages.reminder_message(
        add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.MISSED), now=NOW
    )
    assert "List-Unsubscribe" not in escalation.extra_headers


def test_it_derives_the_message_id_from_the_key(centre_a, make_patient, open_visit):
    reminder = add_reminder(open_visit(make_patient(centre_a), NOW.date()), NOW)
    first = messages.reminder_message(reminder, now=NOW).extra_headers["Message-ID"]
    again = messages.reminder_message(Reminder.objects.get(pk=reminder.pk), now=NOW).extra_headers["Message-ID"]
    assert first == again == messages.message_id_for(reminder.idempotency_key)
    assert first.startswith("<") and first.endswith("@cartwatch>")


def test_it_updates_then_cancels_the_patients_calendar_entry(smtp_settings, centre_a, make_patient, open_visit):
    patient = make_patient(centre_a)
    visit = open_visit(patient, NOW.date())
    add_reminder(visit, NOW)
    dispatch.dispatch_run(NOW)
    calendar, part = _calendar(smtp_settings.to(patient.email)[-1])
    event = calendar.walk("VEVENT")[0]
    uid = str(event["UID"])
    assert (uid, event["SEQUENCE"], str(calendar["METHOD"])) == (visit.ics_uid(), 0, "REQUEST")

    later = NOW + dt.timedelta(hours=1)
    visit = lifecycle.visit_reschedule(visit, new_date=visit.due_date + dt.timedelta(days=3), now=later)
    moved = Reminder.objects.get(visit=visit, purpose=Purpose.MOVED, status=ReminderStatus.PENDING)
    assert moved.send_after == later  # the patient hears of the move at once, not at the next reminder
    dispatch.dispatch_run(later)
    calendar, _ = _calendar(smtp_settings.to(patient.email)[-1])
    event = calendar.walk("VEVENT")[0]
    assert (str(event["UID"]), event["SEQUENCE"]) == (uid, 1)
    assert event.decoded("DTSTART") == visit.due_date
    assert smtp_settings.to(patient.email)[-1]["Subject"].startswith("Your follow-up visit has moved")

    visit = lifecycle.visit_cancel(visit, reason="patient moved abroad", now=later)
    dispatch.dispatch_run(later)
    calendar, part = _calendar(smtp_settings.to(patient.email)[-1])
    event = calendar.walk("VEVENT")[0]
    assert (str(calendar["METHOD"]), str(event["STATUS"]), str(event["UID"])) == ("CANCEL", "CANCELLED", uid)
    assert part.get_param("method") == "CANCEL"
    assert len(smtp_settings.to(patient.email)) == 3  # the first reminder, the move, the cancellation


def test_it_tells_no_one_of_a_move_the_patient_never_heard_of(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    lifecycle.visit_reschedule(visit, new_date=visit.due_date + dt.timedelta(days=3), now=NOW)
    assert not Reminder.objects.filter(visit=visit, purpose=Purpose.MOVED).exists()


@given(address=st.emails() | st.sampled_from(["josé@exämple.org", "Ana <ana@example.org>", "a..b@example.org"]))
@settings(max_examples=200, deadline=None)
def test_it_puts_on_the_envelope_what_django_would(address):
    from django.conf import settings as django_settings
    from django.core.mail.message import sanitize_address

    from surveillance.models import FollowUpVisit, Infusion, Patient

    visit = FollowUpVisit(infusion=Infusion(patient=Patient(email=address)))
    reminder = Reminder(visit=visit, audience=Audience.PATIENT)
    try:
        expected = sanitize_address(address, django_settings.DEFAULT_CHARSET)
    except ValueError:
        with pytest.raises(ValueError):
            messages.reminder_envelope(reminder)
    else:
        assert messages.reminder_envelope(reminder)[1] == [expected]


def test_it_starts_a_spanish_subject_on_its_own_line(centre_a, make_patient, open_visit):
    wednesday = dt.date(2026, 12, 9)  # "miércoles": the subject must be encoded, and folds
    visit = open_visit(make_patient(centre_a, preferred_language="es"), wednesday - dt.timedelta(days=5))
    raw = messages.reminder_bytes(add_reminder(visit, NOW), now=NOW)

    assert raw.split(b"\r\n").count(b"Subject: ") == 0  # no header that begins with a line break
    subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
    assert subject == "Recordatorio: su visita de seguimiento el miércoles 9 de diciembre de 2026"
