"""`seed_demo`: a realistic cohort, deterministic, and a re-run changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.core.management import call_command

from surveillance.models import FollowUpVisit, Infusion, MalignancyEvent, Patient, ReportingStep, VisitStatus
from surveillance.seeds.demo import demo_cohort_create, demo_settings

pytestmark = pytest.mark.django_db
TODAY = dt.date(2026, 11, 23)


@pytest.fixture
def cfg():
    return demo_settings(settings.CARTWATCH["SEEDS_DIR"] / "demo.yaml")


def test_it_builds_a_cohort_with_history_and_a_future(cfg):
    report = demo_cohort_create(60, cfg, today=TODAY)
    assert report.created == 60
    assert Infusion.objects.count() == 60
    years = {d.year for d in Infusion.objects.values_list("infusion_date", flat=True)}
    assert min(years) >= 2017 and max(years) <= 2026 and len(years) >= 5
    assert Infusion.objects.values("product").distinct().count() >= 4
    assert Infusion.objects.filter(protocol__variant="intensified").exists()
    assert Infusion.objects.filter(protocol__variant="standard").exists()
    assert FollowUpVisit.objects.filter(status=VisitStatus.COMPLETED, completed_on__lt=TODAY).count() > 300
    assert FollowUpVisit.objects.filter(status=VisitStatus.MISSED).exists()
    assert FollowUpVisit.objects.filter(status=VisitStatus.SCHEDULED, due_date__gt=TODAY).exists()
    assert set(Patient.objects.values_list("preferred_language", flat=True)) == {"en", "es"}


def test_it_changes_nothing_when_run_again():
    call_command("seed_demo", "--patients", "15")
    counts = (Patient.objects.count(), FollowUpVisit.objects.count(), MalignancyEvent.objects.count())
    call_command("seed_demo", "--patients", "15")
    assert (Patient.objects.count(), FollowUpVisit.objects.count(), MalignancyEvent.objects.count()) == counts
    call_command("seed_demo", "--patients", "20")
    assert Patient.objects.count() == 20


def test_it_gives_second_cancers_at_about_the_published_rate(cfg):
    demo_cohort_create(250, cfg, today=TODAY)
    events = MalignancyEvent.objects.select_related("infusion")
    within_3_years = [e for e in events if (e.diagnosis_date - e.infusion.infusion_date).days <= 3 * 365]
    at_risk = Infusion.objects.filter(infusion_date__lte=TODAY - dt.timedelta(days=3 * 365)).count()
    # about 6.5% by year 3 (clinical reference (d)); a wide band, as a 250-patient sample is noisy
    assert 0.02 * at_risk <= len(within_3_years) <= 0.14 * Infusion.objects.count()
    assert ReportingStep.objects.count() == 4 * events.count()
    assert all(e.diagnosis_date > e.infusion.infusion_date for e in events)
