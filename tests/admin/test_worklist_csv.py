"""A worklist's CSV export carries the caller's columns and opens correctly in Excel (UTF-8 with a BOM)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from surveillance.models import AuditEntry, ContactAttempt
from surveillance.models.patients import LadderStage
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
BOM = "\ufeff".encode()
CALLER_COLUMNS = [
    "mrn",
    "patient",
    "phone",
    "preferred_contact",
    "language",
    "next_visit",
    "due_date",
    "window_start",
    "window_end",
    "days_late_or_left",
    "last_contact_attempt",
    "last_contact_method",
]


@pytest.fixture
def visit(centre_a, planned, today):
    infusion = planned(centre_a, given_name="Zoë", family_name="Muñoz", phone="+1 212 555 0199")
    ContactAttempt.objects.create(
        patient=infusion.patient, attempted_at=dt.datetime(2026, 2, 3, 14, 5, tzinfo=dt.UTC), method="phone"
    )
    return visit_set(scheduled(infusion, "M3"), due=today - 2 * DAY)


def _export(client, url: str, pks: list[int]) -> tuple[bytes, list[dict[str, str]]]:
    response = client.post(url, {"action": "export_csv", "_selected_action": pks})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    return response.content, list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_it_exports_a_visit_worklist_with_a_bom_and_the_caller_columns(login, coordinator_a, visit, today):
    url = reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue"
    content, rows = _export(login(coordinator_a), url, [visit.pk])
    assert content.startswith(BOM) and not content.startswith(BOM * 2)
    assert list(rows[0])[: len(CALLER_COLUMNS)] == CALLER_COLUMNS
    row = rows[0]
    assert row["patient"] == "Muñoz, Zoë" and row["phone"] == "+1 212 555 0199"
    assert row["next_visit"] == visit.label and row["due_date"] == visit.due_date.isoformat()
    assert row["window_start"] == visit.window_start.isoformat() and row["window_end"] == visit.window_end.isoformat()
    assert row["days_late_or_left"] == "2 days late" and row["language"] == "English"
    assert row["last_contact_attempt"] == "2026-02-03 09:05 EST" and row["last_contact_method"] == "phone"
    assert row["status"] == "scheduled"
    assert AuditEntry.objects.filter(action="export", object_type="followupvisit").count() == 1


def test_it_exports_the_ladder_with_each_patients_next_visit(login, coordinator_a, visit):
    patient = visit.infusion.patient
    patient.ladder_stage = LadderStage.TRACING
    patient.save()
    url = reverse("admin:surveillance_patient_changelist") + "?worklist=ladder"
    content, rows = _export(login(coordinator_a), url, [patient.pk])
    assert content.startswith(BOM)
    assert list(rows[0])[: len(CALLER_COLUMNS)] == CALLER_COLUMNS
    assert rows[0]["mrn"] == patient.mrn and rows[0]["next_visit"] == visit.label
    assert rows[0]["ladder_stage"] == "tracing" and rows[0]["days_late_or_left"] == "2 days late"
