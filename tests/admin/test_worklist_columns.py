"""Worklist rows carry what a caller needs: patient, phone and how to reach them, language, the visit, its due
date and window, days late or left, and the last contact attempt."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import formats
from django.utils.text import capfirst

from surveillance.models import ContactAttempt
from surveillance.models.patients import LadderStage
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
UTC = dt.UTC


def _row(response, text: str) -> str:
    """The HTML of the one result row that contains ``text``."""
    body = response.content.decode()
    rows = [row for row in body.split("<tr")[1:] if text in row]
    assert len(rows) == 1, f"{len(rows)} rows contain the text"
    return rows[0]


@pytest.fixture
def late_patient(centre_a, planned, today):
    infusion = planned(centre_a, given_name="Lucía", family_name="Caller", phone="+1 617 555 0142")
    infusion.patient.preferred_language = "es"
    infusion.patient.save()
    visit = visit_set(scheduled(infusion, "M3"), due=today - 3 * DAY)
    ContactAttempt.objects.create(
        patient=infusion.patient, attempted_at=dt.datetime(2026, 1, 15, 14, 0, tzinfo=UTC), method="phone", reached=True
    )
    ContactAttempt.objects.create(
        patient=infusion.patient, attempted_at=dt.datetime(2026, 1, 20, 15, 30, tzinfo=UTC), method="letter"
    )
    return visit


def test_it_shows_the_caller_columns_on_a_visit_worklist(login, coordinator_a, late_patient, today):
    response = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist"), {"worklist": "overdue"})
    headers = [capfirst(column["text"]) for column in response.context["result_headers"]]
    assert headers[1:] == [
        "Patient",
        "Phone / preferred contact",
        "Language",
        "Visit",
        "Due date",
        "Window",
        "Days late / left",
        "Last contact attempt",
        "Status",
    ]
    row = _row(response, "Caller, Lucía")
    assert "+1 617 555 0142" in row and "Phone" in row  # reached by phone last time
    assert "Español" in row
    assert late_patient.label in row
    assert formats.date_format(late_patient.due_date, "j M Y") in row
    assert f"{formats.date_format(late_patient.window_start, 'j M Y')} → " in row
    assert "3 days late" in row
    assert "20 Jan 2026, 10:30 EST (letter)" in row


def test_it_counts_days_left_on_a_visit_not_yet_due(login, coordinator_a, late_patient, today):
    visit_set(late_patient, due=today + 4 * DAY, before=6)
    response = login(coordinator_a).get(
        reverse("admin:surveillance_followupvisit_changelist"), {"worklist": "window_open"}
    )
    assert "4 days left" in _row(response, "Caller, Lucía")


def test_it_shows_the_next_visit_and_the_caller_columns_on_the_ladder(login, coordinator_a, late_patient, today):
    patient = late_patient.infusion.patient
    patient.ladder_stage = LadderStage.TRACING
    patient.save()
    response = login(coordinator_a).get(reverse("admin:surveillance_patient_changelist"), {"worklist": "ladder"})
    row = _row(response, "Caller, Lucía")
    assert "+1 617 555 0142" in row and "Español" in row
    assert late_patient.label in row and "3 days late" in row  # the earliest scheduled visit is the late one
    assert "20 Jan 2026, 10:30 EST (letter)" in row
    assert reverse("admin:surveillance_patient_log_attempt", args=[patient.pk]) in row


def test_it_says_no_phone_and_no_attempt_plainly(login, coordinator_a, centre_a, planned, today):
    infusion = planned(centre_a, given_name="Noor", family_name="Quiet", contact_consent=False)
    visit_set(scheduled(infusion, "M3"), due=today - DAY)
    response = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist"), {"worklist": "overdue"})
    row = _row(response, "Quiet, Noor")
    assert "no phone" in row and "1 day late" in row
    assert row.count("—") >= 2  # no way that reached them yet, no attempt
