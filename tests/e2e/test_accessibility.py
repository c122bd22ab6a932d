"""Every main page of the workspace passes axe-core with no serious or critical violation.

axe-core runs inside Debian's Chromium on each page as a coordinator (and a physician, for the second-cancer
pages) sees it, with data on it: an empty list hides the controls that most often lack labels.
"""

from __future__ import annotations

import datetime as dt

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse
from django.utils import timezone

from surveillance.admin.worklists import WORKLISTS
from surveillance.care import planning, reporting
from surveillance.models import FollowUpVisit, SignalReview
from surveillance.signals.review import signals_record
from surveillance.signals.rules import ClinicalRecords, Diagnosis
from tests.admin.conftest import scheduled, visit_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
DAY = dt.timedelta(days=1)
#: The impacts that fail the test; "moderate" and "minor" are reported by axe but left to judgement.
BLOCKING = {"serious", "critical"}


@pytest.fixture
def cohort(centre_a, make_patient, make_infusion):
    """An overdue visit, a second cancer with its reporting steps and an open signal review at centre A."""
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = make_infusion(
        make_patient(centre_a, given_name="Ada", family_name="Access", phone="+34 600 000 000"),
        infusion_date=today - 500 * DAY,
    )
    planning.infusion_plan(infusion)
    visit_set(scheduled(infusion, "M12"), due=today - 3 * DAY)
    event = reporting.malignancy_event_record(infusion, diagnosis_date=today - 30 * DAY, malignancy_type="mds_aml")
    signals_record(
        infusion, ClinicalRecords(diagnoses=(Diagnosis("icd10", "C84.40", today - 10 * DAY),)), source="fhir"
    )
    return {
        "patient": infusion.patient,
        "visit": FollowUpVisit.objects.filter(infusion=infusion).first(),
        "event": event,
        "review": SignalReview.objects.get(infusion=infusion),
    }


def _pages(cohort) -> list[str]:
    return [
        reverse("admin:index"),
        *(w.url() for w in WORKLISTS),
        reverse("admin:surveillance_patient_changelist"),
        reverse("admin:surveillance_patient_change", args=[cohort["patient"].pk]),
        reverse("admin:surveillance_patient_schedule", args=[cohort["patient"].pk]),
        reverse("admin:surveillance_followupvisit_change", args=[cohort["visit"].pk]),
        reverse("admin:surveillance_malignancyevent_change", args=[cohort["event"].pk]),
        reverse("admin:surveillance_signalreview_change", args=[cohort["review"].pk]),
        reverse("admin:dashboard"),
        reverse("admin:protocol_upgrade_list"),
    ]


def _blocking(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[(n['target'], n.get('failureSummary')) for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def test_it_passes_axe_on_the_sign_in_page(page, live_server):
    page.goto(f"{live_server.url}/admin/login/")
    assert _blocking(page) == []


@pytest.mark.parametrize("user", ["coordinator-a", "physician-a"])
def test_it_passes_axe_on_every_main_page(page, live_server, sign_in, coordinator_a, physician_a, cohort, user):
    sign_in(page, user)
    found = {}
    for path in _pages(cohort):
        response = page.goto(f"{live_server.url}{path}")
        if response.status == 403:  # a page this role may not open: its friendly 403 is checked instead
            path = f"{path} (403)"
        violations = _blocking(page)
        if violations:
            found[path] = violations
    assert found == {}
