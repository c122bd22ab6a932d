"""A worklist's CSV export carries the caller's columns and opens correctly in Excel (UTF-8 with a BOM)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse

from surveillance.models import AuditEntry, ContactAttempt, StaffPreference
from surveillance.models.patients import LadderStage
from surveillance.seeds.labels import label, visit_label
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
BOM = "\ufeff".encode()
CALLER_COLUMNS = [
    "MRN",
    "Patient",
    "Phone",
    "Preferred contact",
    "Language",
    "Next visit",
    "Due date",
    "Window opens",
    "Window closes",
    "Days late / left",
    "Last contact attempt",
    "Last contact method",
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
    assert row["Patient"] == "Muñoz, Zoë" and row["Phone"] == "+1 212 555 0199"
    assert row["Next visit"] == visit.label and row["Due date"] == visit.due_date.isoformat()
    assert row["Window opens"] == visit.window_start.isoformat()
    assert row["Window closes"] == visit.window_end.isoformat()
    assert row["Days late / left"] == "2 days late" and row["Language"] == "English"
    assert row["Last contact attempt"] == "2026-02-03 09:05 EST" and row["Last contact method"] == "Phone"
    assert row["Visit code"] == "M3" and row["Status"] == "Scheduled"
    assert AuditEntry.objects.filter(action="export", object_type="followupvisit").count() == 1


def test_it_exports_the_ladder_with_each_patients_next_visit(login, coordinator_a, visit):
    patient = visit.infusion.patient
    patient.ladder_stage = LadderStage.TRACING
    patient.save()
    url = reverse("admin:surveillance_patient_changelist") + "?worklist=ladder"
    content, rows = _export(login(coordinator_a), url, [patient.pk])
    assert content.startswith(BOM)
    assert list(rows[0])[: len(CALLER_COLUMNS)] == CALLER_COLUMNS
    assert rows[0]["MRN"] == patient.mrn and rows[0]["Next visit"] == visit.label
    assert rows[0]["Ladder stage"] == "Tracing" and rows[0]["Days late / left"] == "2 days late"


def test_it_exports_in_the_users_language(login, coordinator_a, visit):
    StaffPreference.objects.create(user=coordinator_a, language="es")
    url = reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue"
    _, rows = _export(login(coordinator_a), url, [visit.pk])
    row = rows[0]
    assert list(row)[:3] == ["N.º de historia clínica", "Paciente", "Teléfono"]
    assert row["Próxima visita"] == visit_label(visit.rule_code, visit.label, "es") != visit.label
    assert row["Estado"] == label("visit.scheduled", "es") and row["Último método de contacto"] == "Teléfono"
    assert row["Días de retraso / restantes"] == "2 días de retraso"
