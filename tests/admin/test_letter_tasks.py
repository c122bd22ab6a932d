"""The worklist "Letters and calls to make": a patient no message reaches is on it with a printable letter (the
email's data, by name, in the patient's language); marking the task done records the contact attempt; staff of
another centre see neither the task nor its letter."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import AuditEntry, ContactAttempt, LetterTask
from surveillance.reminders import dispatch, outbox

pytestmark = pytest.mark.django_db
LIST = "/admin/surveillance/lettertask/"


@pytest.fixture
def task(smtp_settings, centre_a, make_patient, open_visit):
    centre_a.phone = "+1 617-555-0100"
    centre_a.address = "55 Fruit Street\nBoston, MA 02114"
    centre_a.save()
    now = timezone.now()
    patient = make_patient(centre_a, email="", phone="", given_name="Lucía", preferred_language="es")
    visit = open_visit(patient, timezone.localdate(now, centre_a.tz))
    outbox.visit_reminders_sync(visit, now)
    dispatch.dispatch_run(now + dt.timedelta(seconds=1))
    return LetterTask.objects.get()


def test_it_lists_the_task_and_prints_its_letter(login, coordinator_a, task):
    client = login(coordinator_a)
    page = client.get(f"{LIST}?worklist=letters").content.decode()
    assert "Letters and calls to make" in page and task.visit.infusion.patient.family_name in page

    letter = client.get(f"{LIST}{task.pk}/letter/")
    assert letter.status_code == 200
    text = letter.content.decode()
    patient = task.visit.infusion.patient
    assert f"Estimado/a Lucía {patient.family_name}" in text
    assert "55 Fruit Street" in text and "+1 617-555-0100" in text and "@page" in text
    assert str(task.visit.due_date.year) in text and task.visit.infusion.product.brand not in text
    assert AuditEntry.objects.filter(object_type="lettertask", object_id=str(task.pk), actor=coordinator_a).exists()


def test_it_records_the_letter_sent_as_a_contact_attempt(login, coordinator_a, task):
    client = login(coordinator_a)
    response = client.post(f"{LIST}?worklist=letters", {"action": "letter_sent", "_selected_action": [task.pk]})
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.done_at is not None and task.done_by == coordinator_a
    attempt = ContactAttempt.objects.get(patient=task.visit.infusion.patient)
    assert (attempt.method, attempt.by, task.contact_attempt) == ("letter", coordinator_a, attempt)
    page = client.get(f"{LIST}?worklist=letters").content.decode()
    assert task.visit.infusion.patient.family_name not in page


def test_it_shows_another_centres_staff_nothing(login, physician_b, task):
    client = login(physician_b)
    assert client.get(f"{LIST}{task.pk}/letter/").status_code == 404
    assert task.visit.infusion.patient.family_name not in client.get(LIST).content.decode()
