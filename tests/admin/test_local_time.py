"""Times in the admin are shown in the user's centre's time zone with its abbreviation, dates in one format."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse

from surveillance.models import ContactAttempt, Reminder
from tests.admin.conftest import scheduled, visit_set
from tests.conftest import _staff

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
NINE_IN_NEW_YORK = dt.datetime(2030, 1, 15, 14, 0, tzinfo=dt.UTC)  # 09:00 EST, 15:00 CET


@pytest.fixture
def reminder(centre_a, planned, today) -> Reminder:
    infusion = planned(centre_a)
    visit = visit_set(scheduled(infusion, "M3"), due=today + 10 * DAY)
    reminder = Reminder.objects.filter(visit=visit).first()
    Reminder.objects.filter(pk=reminder.pk).update(send_after=NINE_IN_NEW_YORK)
    return reminder


def _patient_page(client, reminder) -> str:
    url = reverse("admin:surveillance_patient_change", args=[reminder.visit.infusion.patient_id])
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_a_reminder_at_its_local_hour_with_the_zone(login, coordinator_a, reminder):
    body = _patient_page(login(coordinator_a), reminder)
    assert "15 Jan 2030, 09:00 EST" in body
    assert "14:00" not in body


def test_it_shows_the_same_moment_in_another_centres_zone_to_its_staff(
    login, auditor, centre_b, reminder, django_user_model
):
    # the auditor's first centre is A: New York time; a user of centre B alone reads Madrid time
    assert "15 Jan 2030, 09:00 EST" in _patient_page(login(auditor), reminder)
    madrid = reminder.visit.infusion.patient
    madrid.centre = centre_b
    madrid.save()
    user = _staff(django_user_model, "coordinator-b", "coordinator", centre_b)
    assert "15 Jan 2030, 15:00 CET" in _patient_page(login(user), reminder)


def test_it_shows_summer_time_with_its_own_abbreviation(login, coordinator_a, centre_a, planned):
    patient = planned(centre_a).patient
    ContactAttempt.objects.create(
        patient=patient, attempted_at=dt.datetime(2026, 7, 1, 13, 0, tzinfo=dt.UTC), method="phone"
    )
    body = login(coordinator_a).get(reverse("admin:surveillance_patient_log_attempt", args=[patient.pk])).content
    assert b"1 Jul 2026, 09:00 EDT" in body


def test_it_writes_dates_in_one_format_on_the_lists_and_the_index(login, coordinator_a, centre_a, planned, today):
    visit = visit_set(scheduled(planned(centre_a), "M3"), due=today - 3 * DAY)
    client = login(coordinator_a)
    body = client.get(reverse("admin:surveillance_followupvisit_changelist")).content.decode()
    assert f"{visit.due_date.day} {visit.due_date:%b %Y}" in body
    cells = re.sub(r'aria-label="[^"]*"', "", body.split('id="result_list"', 1)[1])  # the model's own string form
    assert visit.due_date.isoformat() not in cells
    index = client.get(reverse("admin:index")).content.decode()
    assert f"Today, {today.day} {today:%b %Y}" in index
