"""A visit missed under a wrong infusion date was not missed: correcting the date moves it with the others (and the
diff says so). Any other re-plan (a risk flag, a protocol upgrade) keeps missed visits as history."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.care import infusions, lifecycle
from surveillance.care.risk_flags import FlagFacts, infusion_risk_flags_record
from surveillance.models import CarTProduct, FollowUpVisit, Infusion, VisitStatus
from surveillance.models.patients import FlagSource

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


@pytest.fixture
def missed(centre_a, make_patient) -> FollowUpVisit:
    """The first visit ahead of an infusion given 120 days ago, recorded as missed (on the date as entered, it
    should have taken place)."""
    today = timezone.localdate(timezone.now(), centre_a.tz)
    infusion = Infusion(
        patient=make_patient(centre_a),
        product=CarTProduct.objects.get(code="yescarta"),
        infusion_date=today - 120 * DAY,
    )
    infusions.infusion_record(infusion, reason="recorded")
    visit = infusion.visits.filter(status=VisitStatus.SCHEDULED).order_by("due_date").first()
    lifecycle.visit_mark_missed(visit, reason="Window closed without a recorded visit")
    visit.refresh_from_db()
    assert visit.status == VisitStatus.MISSED
    return visit


def test_it_moves_a_missed_visit_when_the_infusion_date_is_corrected(missed):
    infusion = missed.infusion
    corrected = infusion.infusion_date + 60 * DAY
    diff = infusions.infusion_correct(infusion, infusion_date=corrected, reason="date typed wrong")
    missed.refresh_from_db()
    assert missed.pk in {move.visit_id for move in diff.moved}
    assert missed.status in (VisitStatus.SCHEDULED, VisitStatus.UNRECORDED)
    assert missed.due_date > missed.infusion.infusion_date


def test_it_keeps_a_missed_visit_as_history_when_a_risk_flag_replans(missed):
    flag = FlagFacts(
        code="clonal_haematopoiesis", present=True, source=FlagSource.NGS_REPORT, observed_on=missed.due_date
    )
    before = missed.due_date
    outcome = infusion_risk_flags_record(missed.infusion, [flag], reason="CH found")
    assert outcome.diff is not None
    missed.refresh_from_db()
    assert (missed.status, missed.due_date) == (VisitStatus.MISSED, before)
