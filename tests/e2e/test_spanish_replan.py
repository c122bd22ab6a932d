"""A physician whose workspace speaks Spanish adds a risk flag in a real browser: the re-plan is previewed, then
confirmed, all in Spanish, and only the confirmation changes the schedule."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.care import planning
from surveillance.models import FollowUpVisit, RiskFlag, StaffPreference
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_confirms_a_replan_in_spanish(
    page, live_server, sign_in, physician_a, centre_a, make_patient, make_infusion
):
    StaffPreference.objects.create(user=physician_a, language="es")
    patient = make_patient(centre_a, given_name="Lucía", family_name="Replan")
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = make_infusion(patient, infusion_date=today - dt.timedelta(days=60))
    planning.infusion_plan(infusion)
    infusion.refresh_from_db()
    assert infusion.protocol.variant == "standard"
    visits_before = FollowUpVisit.objects.filter(infusion=infusion).count()

    sign_in(page, "physician-a")
    page.goto(f"{live_server.url}/admin/surveillance/patient/{patient.pk}/change/")
    page.get_by_role("link", name="Cambiar factor de riesgo o fecha de infusión…").click()
    page.wait_for_url(f"**/infusion/{infusion.pk}/replan/")
    page.select_option("#id_flag_code", "prior_auto_hct")
    page.select_option("#id_flag_source", "treatment_history")
    page.fill("#id_flag_reference", "Informe de alta 2019")
    page.fill("#id_reason", "Trasplante autólogo previo en la historia")
    page.get_by_role("button", name="Ver la replanificación").click()
    diff = page.locator("#replan-diff")
    diff.wait_for()
    assert "Lo que haría la replanificación" in diff.inner_text()
    assert "añadidas" in diff.inner_text()
    assert not RiskFlag.objects.filter(infusion=infusion).exists()  # a preview writes nothing
    screenshot(page, "replan-es")

    page.get_by_role("button", name="Confirmar y aplicar").click()
    page.wait_for_url(f"**/patient/{patient.pk}/change/")
    message = page.locator(".messagelist li").first.inner_text()
    assert message.startswith("Cambio aplicado, visitas replanificadas:")
    infusion.refresh_from_db()
    assert infusion.protocol.variant == "intensified"
    assert RiskFlag.objects.get(infusion=infusion).code == "prior_auto_hct"
    assert FollowUpVisit.objects.filter(infusion=infusion).count() > visits_before
