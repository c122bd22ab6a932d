"""The dashboard's second-cancer signal figures: reviews by kind and outcome, and the time from result to decision."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.care import cohort
from surveillance.models import SignalReview
from surveillance.signals.review import signal_review_dismiss, signals_record
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


@pytest.fixture
def reviewed(planned, centre_a, centre_b, physician_a, today):
    """Centre A: two T-cell lymphoma reviews (one dismissed 10 days after its result) and a blasts review left
    open for 5 days; centre B: one review that centre A's figures must not count.

    The clock is the evening at centre A, already the next day in UTC, so a count that mixed the two days
    would be one off."""
    now = dt.datetime.combine(today, dt.time(21, 30), tzinfo=centre_a.tz)
    first, second, third = (planned(centre_a, days_ago=500) for _ in range(3))
    for infusion in (first, second):
        signals_record(
            infusion,
            ClinicalRecords(diagnoses=(Diagnosis("icd10", "C84.40", today - 20 * DAY),)),
            source="fhir",
            now=now - 12 * DAY,
        )
    signals_record(
        third, ClinicalRecords(labs=(LabResult("709-8", 3, "%", today - 6 * DAY),)), source="fhir", now=now - 5 * DAY
    )
    dismissed = SignalReview.objects.get(infusion=first)
    signal_review_dismiss(dismissed, by=physician_a, reason="Coding error", now=now - 10 * DAY)
    other = planned(centre_b, days_ago=500)
    signals_record(other, ClinicalRecords(diagnoses=(Diagnosis("icd10", "C84.40", today - 3 * DAY),)), source="fhir")
    return dismissed


def test_it_counts_reviews_by_kind_and_outcome_with_the_median_time_to_decision(reviewed, centre_a, today):
    figures = {f.kind: f for f in cohort.cohort_figures([centre_a.pk], today).signal_reviews}
    lymphoma = figures[reviewed.kind]
    assert lymphoma.by_status == {"open": 1, "workup_ordered": 0, "confirmed": 0, "dismissed": 1}
    assert lymphoma.days_to_review == 10  # result 20 days ago, decided 10 days ago
    assert lymphoma.days_on_worklist == 2.0  # opened 12 days ago, decided 10 days ago
    assert lymphoma.oldest_open_days == 12
    blasts = next(f for kind, f in figures.items() if kind != reviewed.kind)
    assert (blasts.total, blasts.days_to_review, blasts.oldest_open_days) == (1, None, 5)
    assert sum(f.total for f in figures.values()) == 3  # centre B's review is not counted


def test_it_shows_the_signal_table_with_links_to_the_review_worklist(login, physician_a, reviewed):
    html = login(physician_a).get(reverse("admin:dashboard")).content.decode()
    assert 'id="signals"' in html
    assert f"?kind={reviewed.kind}" in html
    assert "Median days, result to decision" in html
