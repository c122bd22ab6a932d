"""Reviews left open past ``SIGNAL_ESCALATE_DAYS`` are escalated, once, by the daily sweep's function."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import AuditEntry, SignalReview
from surveillance.signals.review import signal_review_order_workup, signal_reviews_escalate, signals_record
from surveillance.signals.rules import ClinicalRecords, LabResult
from tests.signals.conftest import INFUSED, day

pytestmark = pytest.mark.django_db
OPENED = dt.datetime(2025, 11, 3, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def review(centre_a, make_patient, make_infusion) -> SignalReview:
    infusion = make_infusion(make_patient(centre_a), infusion_date=INFUSED)
    labs = (LabResult("751-8", 1.2, "10*3/uL", day(274)),)
    signals_record(infusion, ClinicalRecords(labs=labs), source="fhir", now=OPENED)
    return SignalReview.objects.get()


def test_it_escalates_a_review_open_longer_than_the_setting_once(review, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "SIGNAL_ESCALATE_DAYS": 7}
    assert signal_reviews_escalate(OPENED + dt.timedelta(days=7)) == 0
    later = OPENED + dt.timedelta(days=7, minutes=1)
    assert signal_reviews_escalate(later) == 1
    assert signal_reviews_escalate(later + dt.timedelta(days=1)) == 0
    review.refresh_from_db()
    assert review.escalated_at == later
    assert AuditEntry.objects.filter(action="signal_escalated", object_id=str(review.pk)).count() == 1


def test_it_follows_the_configured_number_of_days(review, settings):
    settings.CARTWATCH = {**settings.CARTWATCH, "SIGNAL_ESCALATE_DAYS": 2}
    assert signal_reviews_escalate(OPENED + dt.timedelta(days=3)) == 1


def test_it_leaves_a_review_whose_work_up_was_ordered(review, physician_a):
    signal_review_order_workup(review, by=physician_a, items=["bone_marrow"], now=timezone.now())
    assert signal_reviews_escalate(OPENED + dt.timedelta(days=30)) == 0


def test_the_daily_sweep_escalates_them(review):
    from surveillance.reminders.sweep import daily_sweep

    assert daily_sweep(OPENED + dt.timedelta(days=8)).signals_escalated == 1
    review.refresh_from_db()
    assert review.escalated_at is not None
