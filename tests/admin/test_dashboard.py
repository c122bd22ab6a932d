"""The cohort dashboard's figures, checked against a cohort built here."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.care import cohort, lifecycle, reporting
from surveillance.models import FollowUpVisit, Patient, Reminder, ReminderStatus, VisitStatus
from surveillance.models.patients import LadderStage, PatientStatus

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def test_it_computes_one_minus_kaplan_meier_with_censoring_when_nobody_died():
    # 5 followed: events at days 100 and 400; censored at 50, 200 and 500. Without deaths Aalen-Johansen is 1 - KM.
    cancer, censored = cohort.Outcome.SECOND_CANCER, cohort.Outcome.CENSORED
    times = [(100, cancer), (50, censored), (200, censored), (400, cancer), (500, censored)]
    inc = cohort.incidence_aj(times, report_months=(12, 14))
    # day 100: 4 at risk, 1 event -> S=0.75; day 400: 2 at risk, 1 event -> S=0.375
    assert inc.steps == [
        (pytest.approx(100 / cohort.DAYS_PER_MONTH), 25.0),
        (pytest.approx(400 / cohort.DAYS_PER_MONTH), 62.5),
    ]
    assert inc.at == {12: 25.0, 14: 62.5}
    assert inc.events == 2 and inc.infusions == 5


@pytest.fixture
def built(planned, centre_a, centre_b, today):
    """Five patients at centre A infused 400 days ago, each M3 visit settled in a known way; one at centre B."""
    infusions = [planned(centre_a, days_ago=400) for _ in range(5)]
    m3 = [FollowUpVisit.objects.get(infusion=i, rule_code="M3") for i in infusions]
    outcomes = [("in", 0), ("in", 3), ("late", None), ("missed", None)]  # the fifth patient dies before M3
    for visit, (kind, offset) in zip(m3[:4], outcomes, strict=True):
        if kind == "in":
            values = {
                "status": VisitStatus.COMPLETED,
                "completed_on": visit.due_date + offset * DAY,
                "status_reason": "",
            }
        elif kind == "late":
            values = {"status": VisitStatus.COMPLETED, "completed_on": visit.window_end + 2 * DAY, "status_reason": ""}
        else:
            values = {"status": VisitStatus.MISSED, "status_reason": "Not attended"}
        FollowUpVisit.objects.filter(pk=visit.pk).update(**values)
    # One death on day 50 (censored), one second cancer on day 100, one patient lost (ladder).
    lifecycle.patient_close(
        infusions[4].patient, status=PatientStatus.DECEASED, on=infusions[4].infusion_date + 50 * DAY, reason="Died"
    )
    reporting.malignancy_event_record(
        infusions[0], diagnosis_date=infusions[0].infusion_date + 100 * DAY, malignancy_type="mds_aml"
    )
    Patient.objects.filter(pk=infusions[3].patient_id).update(ladder_stage=LadderStage.TRACING)
    reminders = list(Reminder.objects.filter(visit__infusion__in=infusions).order_by("pk")[:3])
    Reminder.objects.filter(pk=reminders[0].pk).update(status=ReminderStatus.FAILED)
    other = planned(centre_b, days_ago=400)
    reporting.malignancy_event_record(other, diagnosis_date=other.infusion_date + 30 * DAY, malignancy_type="solid")
    return infusions


def _expected_workload(today, centre):
    start = today - dt.timedelta(days=today.weekday())
    counts = [0] * 12
    visits = FollowUpVisit.objects.filter(infusion__patient__centre=centre, status=VisitStatus.SCHEDULED).exclude(
        infusion__patient__status=PatientStatus.DECEASED
    )
    for visit in visits:
        offset = (visit.due_date - start).days
        if 0 <= offset < 84:
            counts[offset // 7] += 1
    return counts


def test_it_computes_the_dashboard_figures_of_the_centre(built, centre_a, today):
    figures = cohort.cohort_figures([centre_a.pk], today)
    m3 = next(a for a in figures.adherence if a.rule_code == "M3")
    assert (m3.settled, m3.completed, m3.in_window) == (4, 3, 2)  # the deceased patient's M3 does not count
    assert m3.share == 0.5
    assert [w.visits for w in figures.workload] == _expected_workload(today, centre_a)
    assert figures.patients_by_status["active"] == 4 and figures.patients_by_status["deceased"] == 1
    assert figures.patients_by_status["ladder:tracing"] == 1
    expected = {
        s: Reminder.objects.filter(visit__infusion__patient__centre=centre_a, status=s).count()
        for s in ReminderStatus.values
    }
    assert figures.reminder_outcomes == expected and expected["failed"] == 1
    # Five infusions: the death at day 50 competes (alive and cancer-free: 4/5), then 4 at risk at day 100 and one
    # event: 4/5 x 1/4 = 20% (1 - Kaplan-Meier, censoring the death, would say 25%).
    assert figures.incidence.infusions == 5 and figures.incidence.events == 1
    assert figures.incidence.at[12] == 20.0


def test_it_renders_the_figures_as_pictures_with_the_numbers_beside(login, physician_a, built):
    response = login(physician_a).get(reverse("admin:dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    for section in ("incidence", "adherence", "workload", "statuses", "reminders"):
        assert f'id="{section}"' in html
    assert html.count("<svg") >= 5
    assert "20.0%" in html  # cumulative incidence at 12 months, in the table beside the curve
    assert "6.5% at 36 months" in html  # the published reference line, on hover
    assert "2 of 4 completed within the window (50.0%)" in html
