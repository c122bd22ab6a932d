"""The workspace in the user's own language: the preference saved on "my preferences" wins over the browser's
Accept-Language, which applies when the user chose none."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.models import AuditEntry, StaffPreference
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def _prefer(user, language: str) -> None:
    StaffPreference.objects.update_or_create(user=user, defaults={"language": language})


def test_it_shows_the_home_page_in_spanish_to_a_user_who_prefers_it(login, coordinator_a, planned, centre_a, today):
    visit_set(scheduled(planned(centre_a, days_ago=95), "M3"), due=today - 4 * DAY)
    _prefer(coordinator_a, "es")
    response = login(coordinator_a).get(reverse("admin:index"))
    body = response.content.decode()
    assert response.status_code == 200 and response["Content-Language"] == "es"
    assert "Espacio de trabajo de vigilancia" in body
    assert "Hoy, " in body and "Panel de la cohorte" in body and "Mis preferencias" in body
    assert "Atrasadas" in body and "Próximas (siguientes 14 días)" in body
    assert "Window open now" not in body and "Coming up" not in body


def test_it_titles_a_worklist_in_spanish_with_its_purpose_and_actions(login, coordinator_a, planned, centre_a, today):
    visit_set(scheduled(planned(centre_a, days_ago=95, family_name="Ortega"), "M3"), due=today - 4 * DAY)
    _prefer(coordinator_a, "es")
    response = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Atrasadas</h1>" in body
    assert "Pasada la fecha prevista y aún sin registrar" in body
    assert "Registrar un intento de contacto…" in body and "Cancelar con un motivo…" in body
    assert "Días de retraso / restantes" in body and "Ortega" in body
    assert "Fecha prevista" in body and "Estado" in body and "4 días de retraso" in body
    assert "Mes 3 / día 100" in body and "Month 3 / Day 100" not in body  # the visit named from the catalogue
    assert "Past the due date" not in body and "days late" not in body and "Due date" not in body


def test_it_follows_the_browser_without_a_preference_and_the_preference_over_the_browser(login, coordinator_a):
    client = login(coordinator_a)
    assert (
        "Espacio de trabajo de vigilancia"
        in client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    )
    _prefer(coordinator_a, "en")
    body = client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="es").content.decode()
    assert "Surveillance workspace" in body and "Espacio de trabajo de vigilancia" not in body


def test_it_saves_the_language_on_my_preferences_audited_and_answers_in_it(login, physician_a):
    client = login(physician_a)
    page = client.get(reverse("admin:preferences"))
    assert page.status_code == 200 and 'name="language"' in page.content.decode()
    saved = client.post(reverse("admin:preferences"), {"language": "es"}, follow=True)
    assert saved.status_code == 200
    assert "Sus preferencias se han guardado." in saved.content.decode()
    assert StaffPreference.objects.get(user=physician_a).language == "es"
    entry = AuditEntry.objects.get(object_type="staff_preference", actor=physician_a)
    assert entry.changes == {"language": ["", "es"]}
    assert "Espacio de trabajo de vigilancia" in client.get(reverse("admin:index")).content.decode()


def test_it_refuses_an_unknown_language_with_a_form_error(login, physician_a):
    response = login(physician_a).post(reverse("admin:preferences"), {"language": "xx"})
    assert response.status_code == 400 and "language" in response.context["form"].errors
    assert not StaffPreference.objects.filter(user=physician_a).exists()


def test_it_keeps_date_fields_in_iso_for_the_browsers_date_picker_in_spanish(
    login, coordinator_a, planned, centre_a, today
):
    visit = visit_set(scheduled(planned(centre_a, days_ago=95), "M3"), due=today - 4 * DAY)
    _prefer(coordinator_a, "es")
    body = (
        login(coordinator_a).get(reverse("admin:surveillance_followupvisit_change", args=[visit.pk])).content.decode()
    )
    assert f'type="date" name="completed_on" value="{today.isoformat()}"' in body
    assert "Registrar la visita como realizada" in body


def test_it_draws_the_dashboard_in_spanish(login, physician_a, planned, centre_a):
    planned(centre_a, days_ago=95)
    _prefer(physician_a, "es")
    body = login(physician_a).get(reverse("admin:dashboard")).content.decode()
    assert "<h1>Panel de la cohorte</h1>" in body and "Pacientes por estado" in body
    assert "Semana del " in body and "Activo, con retraso" in body
