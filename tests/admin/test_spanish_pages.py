"""The main workspace pages read in Spanish from end to end for a user who prefers it: the sidebar's model names,
fieldsets, visit names and kinds, statuses, patient requests, the letters list, the dashboard's chart and the
printed schedule's staff bar (the letter itself stays in the patient's language)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import translation

from surveillance.admin.worklists import WORKLISTS_BY_KEY
from surveillance.care import lifecycle
from surveillance.models import EhrPullRun, PatientRequest, PatientStatus, StaffPreference
from surveillance.models.protocols import OffsetUnit
from surveillance.seeds.labels import label, visit_label
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


@pytest.fixture
def spanish_client(login, physician_a):
    StaffPreference.objects.create(user=physician_a, language="es")
    return login(physician_a)


@pytest.fixture
def visit(planned, centre_a, today):
    infusion = planned(centre_a, days_ago=95, given_name="Lucía", family_name="Pérez", preferred_language="en")
    return visit_set(scheduled(infusion, "M3"), due=today - 4 * DAY)


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_it_shows_the_patient_page_in_spanish(spanish_client, visit):
    body = _page(spanish_client, reverse("admin:surveillance_patient_change", args=[visit.infusion.patient_id]))
    assert "Datos demográficos" in body and "Cambios de visitas" in body
    assert visit_label("M3", visit.label, "es") in body and label("clinic", "es") in body
    for english in (
        "Demographics",
        "Visit changes",
        visit.label,
        "Clinic visit",
        f"Patient {visit.infusion.patient_id}",
    ):
        assert english not in body, english


def test_it_shows_the_visit_page_and_worklists_in_spanish(spanish_client, visit):
    body = _page(spanish_client, reverse("admin:surveillance_followupvisit_change", args=[visit.pk]))
    assert visit_label("M3", visit.label, "es") in body and visit.label not in body
    assert label("history_exam", "es") in body and "History and examination" not in body
    overdue = _page(spanish_client, WORKLISTS_BY_KEY["overdue"].url())
    assert label("visit.scheduled", "es") in overdue and "Por código de la regla" in overdue
    assert "Clinic visit" not in overdue and "rule code" not in overdue


def test_it_shows_the_requests_and_letters_lists_in_spanish(spanish_client, visit):
    PatientRequest.objects.create(visit=visit, kind="reschedule")
    requests = _page(spanish_client, WORKLISTS_BY_KEY["requests"].url())
    assert label("request.reschedule", "es") in requests and "Asks to reschedule" not in requests
    letters = _page(spanish_client, WORKLISTS_BY_KEY["letters"].url())
    assert "Cartas y llamadas pendientes" in letters and "Carta enviada: marcar como hecha" in letters
    assert "Letters and calls to make" not in letters and "Letter tasks" not in letters


def test_it_shows_the_dashboard_and_protocol_upgrades_in_spanish(spanish_client, visit):
    dashboard = _page(spanish_client, reverse("admin:dashboard"))
    assert "Incidencia acumulada de segundos cánceres" in dashboard and "Cumulative incidence" not in dashboard
    assert "Cualquier segundo cáncer" in dashboard
    upgrades = _page(spanish_client, reverse("admin:protocol_upgrade_list"))
    assert "<h1>Actualizaciones de protocolo</h1>" in upgrades


def test_it_prints_the_staff_bar_in_the_users_language_and_the_letter_in_the_patients(spanish_client, visit):
    body = _page(spanish_client, reverse("admin:surveillance_patient_schedule", args=[visit.infusion.patient_id]))
    assert 'lang="es"' in body and "Volver a la página del paciente" in body and ">Imprimir<" in body
    assert "Back to the patient page" not in body
    assert '<html lang="en">' in body and "Dear Lucía Pérez," in body


def test_it_shows_the_services_reasons_in_spanish_and_stores_them_in_english(spanish_client, physician_a, visit, today):
    with translation.override("es"):
        lifecycle.patient_close(
            visit.infusion.patient, status=PatientStatus.DECEASED, on=today, reason="", by=physician_a
        )
    visit.refresh_from_db()
    assert visit.status_reason == "Patient deceased"  # data, as the API returns it
    body = _page(spanish_client, reverse("admin:surveillance_followupvisit_change", args=[visit.pk]))
    assert "Paciente: fallecido" in body and "Patient deceased" not in body


def test_it_names_offset_units_and_a_pulls_progress_in_spanish():
    run = EhrPullRun(manifest={}, files=[{"done": True}, {}], report={"lines": 511})
    with translation.override("es"):
        assert (str(OffsetUnit.MONTH.label), run.progress_text) == ("Meses", "1 de 2 archivos importados (511 líneas)")
        assert EhrPullRun().progress_text == "sin empezar"
    with translation.override("en"):
        assert (str(OffsetUnit.MONTH.label), run.progress_text) == ("Months", "1 of 2 files imported (511 lines)")
