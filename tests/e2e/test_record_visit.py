"""In a real browser: from the overdue list, the coordinator opens the visit, reads the assessments in words and
records it done with nothing abnormal in one click; the visit leaves the list with its results."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.care import planning
from surveillance.models import VisitResult, VisitStatus
from tests.admin.conftest import scheduled, visit_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DAY = dt.timedelta(days=1)


def test_it_records_a_visit_done_with_nothing_abnormal_in_one_click(
    page, live_server, sign_in, coordinator_a, centre_a, make_patient, make_infusion
):
    today = timezone.localdate(timezone.now(), centre_a.tz)
    patient = make_patient(centre_a, given_name="Iris", family_name="Quickclick")
    infusion = make_infusion(patient, infusion_date=today - 95 * DAY)
    planning.infusion_plan(infusion)
    visit = visit_set(scheduled(infusion, "M3"), due=today - 4 * DAY)
    sign_in(page, "coordinator-a")
    page.click('[data-worklist="overdue"]')
    page.locator("#result_list tbody tr", has_text="Quickclick, Iris").locator(".cw-visit").click()
    form = page.locator("#complete-form")
    form.wait_for()
    assert "Blood count with differential" in form.inner_text() and "cbc_diff" not in form.inner_text()
    form.locator('input[name="rest_normal"]').click()
    page.wait_for_url("**/followupvisit/?worklist=overdue")
    visit.refresh_from_db()
    assert visit.status == VisitStatus.COMPLETED and visit.completed_on == today
    assert VisitResult.objects.filter(visit=visit, outcome="normal").count() == len(visit.assessments)
