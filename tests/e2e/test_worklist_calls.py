"""A coordinator's morning in a real browser at a laptop's width: find today's calls with the numbers to dial,
reach the ladder's "Log attempt" without scrolling sideways, and print the list without the admin around it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.care import planning
from surveillance.models import ContactAttempt
from surveillance.models.patients import LadderStage
from tests.admin.conftest import scheduled, visit_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DAY = dt.timedelta(days=1)
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
def laptop(browser):
    context = browser.new_context(viewport=LAPTOP, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def late_patient(centre_a, make_patient, make_infusion):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    patient = make_patient(
        centre_a, given_name="Iris", family_name="Dialtone", phone="+1 617 555 0173", ladder_stage=LadderStage.TRACING
    )
    infusion = make_infusion(patient, infusion_date=today - 95 * DAY)
    planning.infusion_plan(infusion)
    visit_set(scheduled(infusion, "M3"), due=today - 4 * DAY)
    attempt = dt.datetime(2026, 11, 2, 15, 45, tzinfo=dt.UTC)
    ContactAttempt.objects.create(patient=patient, attempted_at=attempt, method="referring", note="Left a message")
    return patient


def test_it_finds_todays_calls_with_a_phone_number_and_prints_the_list(
    laptop, live_server, sign_in, coordinator_a, late_patient
):
    page = laptop
    sign_in(page, "coordinator-a")
    assert page.locator("#administration").count() == 0
    page.click('[data-worklist="overdue"]')
    page.wait_for_url("**/followupvisit/?worklist=overdue")
    assert page.locator("#content h1").inner_text() == "Overdue"
    row = page.locator("#result_list tbody tr", has_text="Dialtone, Iris")
    row.wait_for()
    assert row.locator(".cw-phone").inner_text() == "+1 617 555 0173"
    assert "4 days late" in row.inner_text()

    page.emulate_media(media="print")
    assert not page.locator("#nav-sidebar").is_visible()
    assert not page.locator("#header").is_visible()
    assert not page.locator("#changelist-filter").is_visible()
    assert row.locator(".cw-phone").is_visible()
    page.emulate_media(media="screen")
    assert page.locator("#nav-sidebar").is_visible()

    page.goto(f"{live_server.url}/admin/surveillance/patient/{late_patient.pk}/change/")
    page.locator("svg.cw-timeline").first.wait_for()
    page.emulate_media(media="print")
    assert not page.locator("#nav-sidebar").is_visible() and not page.locator("#header").is_visible()
    assert not page.locator(".submit-row").first.is_visible()
    assert page.locator("svg.cw-timeline").first.is_visible()


def test_it_keeps_the_ladders_log_attempt_on_a_1366_pixel_screen(
    laptop, live_server, sign_in, coordinator_a, late_patient
):
    page = laptop
    sign_in(page, "coordinator-a")
    page.click('[data-worklist="ladder"]')
    page.wait_for_url("**/patient/?worklist=ladder")
    assert page.locator("#nav-sidebar").is_visible()  # with the sidebar open, as a coordinator works
    button = page.locator("#result_list tbody tr", has_text="Dialtone, Iris").locator("a.cw-quick")
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= LAPTOP["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP["width"]
    button.click()
    page.wait_for_url(f"**/patient/{late_patient.pk}/log-attempt/")
