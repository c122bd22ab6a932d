"""The clinician workspace in a real browser: work the overdue list, record a second cancer and its reports, and
see the timeline and the dashboard of the demo cohort (screenshots for the README)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from surveillance.access.roles import roles_sync
from surveillance.care import planning
from surveillance.models import (
    CentreMembership,
    FollowUpVisit,
    MalignancyEvent,
    Patient,
    ReportingStep,
    Role,
    TreatmentCentre,
    VisitStatus,
)
from surveillance.seeds.demo import demo_cohort_create, demo_settings
from tests.admin.conftest import scheduled, visit_set
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DAY = dt.timedelta(days=1)


def _planned(centre, make_patient, make_infusion, days_ago: int, **fields):
    patient = make_patient(centre, **fields)
    infusion = make_infusion(patient, infusion_date=timezone.localdate(timezone.now(), centre.tz) - days_ago * DAY)
    planning.infusion_plan(infusion)
    return infusion


def test_it_records_an_overdue_visit_from_the_worklist_and_it_leaves_the_list(
    page, live_server, sign_in, coordinator_a, centre_a, make_patient, make_infusion
):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = _planned(centre_a, make_patient, make_infusion, 95, given_name="Odalys", family_name="Overdue")
    visit = visit_set(scheduled(infusion, "M3"), due=today - 4 * DAY)
    sign_in(page, "coordinator-a")
    page.click('[data-worklist="overdue"]')
    page.wait_for_url("**/followupvisit/?worklist=overdue")
    row = page.locator("#result_list tbody tr", has_text="Overdue, Odalys")
    row.wait_for()
    assert row.count() == 1
    row.locator("span.cw-visit").click()
    page.fill("#id_completed_on", today.isoformat())
    page.click("#complete-form input[type=submit]")
    page.wait_for_url("**/followupvisit/?worklist=overdue")
    assert page.locator(".messagelist .success").count() == 1
    assert page.locator("#result_list tbody tr", has_text="Overdue, Odalys").count() == 0
    visit.refresh_from_db()
    assert visit.status == VisitStatus.COMPLETED and visit.completed_on == today


def test_it_records_a_second_cancer_and_completes_its_reporting_steps(
    page, live_server, sign_in, physician_a, centre_a, make_patient, make_infusion
):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = _planned(centre_a, make_patient, make_infusion, 500, given_name="Mara", family_name="Event")
    sign_in(page, "physician-a")
    page.goto(f"{live_server.url}/admin/surveillance/patient/{infusion.patient_id}/change/")
    page.click("text=Record second cancer")
    page.fill("#id_diagnosis_date", (today - 3 * DAY).isoformat())
    page.select_option("#id_malignancy_type", "t_cell_lymphoma")
    page.click('input[name="_continue"]')
    page.wait_for_selector("#reporting-steps")
    event = MalignancyEvent.objects.get(infusion=infusion)
    assert event.recorded_by == physician_a
    assert page.locator("#manufacturer-contact").inner_text().strip() != ""
    for kind in ("manufacturer", "medwatch", "registry", "sample_shipment"):
        row = page.locator(f'tr[data-step="{kind}"]')
        row.locator("input[name$=reference]").fill(f"REF-{kind}")
        row.locator("input[type=submit]").click()
        page.wait_for_selector(f'tr[data-step="{kind}"] .cw-done')
    screenshot(page, "malignancy-event")
    steps = ReportingStep.objects.filter(event=event)
    assert steps.count() == 4 and not steps.filter(completed_at__isnull=True).exists()
    assert set(steps.values_list("completed_by", flat=True)) == {physician_a.pk}


def test_it_shows_the_worklist_the_timeline_and_the_dashboard_of_the_demo_cohort(page, browser, live_server, sign_in):
    cfg = demo_settings(settings.CARTWATCH["SEEDS_DIR"] / "demo.yaml")
    demo_cohort_create(150, cfg)
    centre = TreatmentCentre.objects.get(code="centre-a")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("coordinator-demo", password="correct-horse-battery", is_staff=True)
    user.groups.add(roles_sync()[Role.COORDINATOR])
    CentreMembership.objects.create(user=user, centre=centre, role=Role.COORDINATOR)

    sign_in(page, "coordinator-demo")
    assert page.locator("#worklists .cw-tile").count() == 12  # identity, product, signal reviews; letters
    screenshot(page, "workspace-index")
    page.click('[data-worklist="window_open"]')
    page.wait_for_url("**/followupvisit/?worklist=window_open")
    page.wait_for_selector("#result_list")
    screenshot(page, "worklist", readme=True, full_page=False)

    followed = (
        Patient.objects.filter(centre=centre, status="active", infusions__visits__status=VisitStatus.COMPLETED)
        .order_by("infusions__infusion_date", "pk")
        .first()
    )
    page.goto(f"{live_server.url}/admin/surveillance/patient/{followed.pk}/change/")
    timeline = page.locator("svg.cw-timeline").first
    timeline.wait_for()
    assert timeline.locator("circle.done").count() > 0
    assert timeline.locator("circle.next").count() == 1
    assert FollowUpVisit.objects.filter(infusion__patient=followed).exists()
    page.locator(".cw-section").first.scroll_into_view_if_needed()
    page.locator(".cw-section").first.screenshot(path=str(screenshot(page, "patient-page")))
    screenshot(page, "timeline", readme=True, target=page.locator(".cw-section").first)

    page.click("text=Printable schedule")
    page.wait_for_selector("main table tbody tr")
    page.emulate_media(media="print")  # as it comes out of the printer: without the staff bar
    assert not page.locator(".staff").is_visible()
    screenshot(page, "patient-letter", readme=True)
    page.emulate_media(media="screen")

    page.goto(f"{live_server.url}/admin/dashboard/")
    page.wait_for_selector("#incidence svg")
    assert page.locator("#incidence path.km").count() == 1
    assert page.locator("#workload rect.bar").count() == 12
    screenshot(page, "dashboard", readme=True)

    # The same worklist for a coordinator whose browser asks for Spanish (no language saved in the preferences)
    spanish = browser.new_context(viewport={"width": 1360, "height": 900}, locale="es-ES").new_page()
    sign_in(spanish, "coordinator-demo")
    spanish.click('[data-worklist="window_open"]')
    spanish.wait_for_selector("#result_list")
    assert spanish.locator("html").get_attribute("lang") == "es"
    screenshot(spanish, "worklist-es", readme=True, full_page=False)
    spanish.context.close()
