"""Aalen-Johansen cumulative incidence of second cancers with death as a competing risk, against a hand count."""

from __future__ import annotations

import pytest

from surveillance.care.cohort import DAYS_PER_MONTH, Outcome, incidence_aj

CANCER, DEATH, CENSORED = Outcome.SECOND_CANCER, Outcome.DEATH, Outcome.CENSORED


def test_it_matches_a_hand_computed_example_with_deaths_competing():
    times = [(100, CANCER), (50, DEATH), (200, CENSORED), (400, CANCER), (500, DEATH), (300, DEATH)]
    inc = incidence_aj(times, report_months=(6, 12, 16))
    # day 50: 6 at risk, a death: alive and cancer-free S = 5/6.
    # day 100: 5 at risk, a cancer: CIF = 5/6 x 1/5 = 1/6 (16.67%); S = 4/6.
    # day 200: a censoring leaves 3 at risk. day 300: a death, S = 4/6 x 2/3 = 4/9.
    # day 400: 2 at risk, a cancer: CIF = 1/6 + 4/9 x 1/2 = 7/18 (38.89%).
    assert inc.steps == [
        (pytest.approx(100 / DAYS_PER_MONTH), 16.67),
        (pytest.approx(400 / DAYS_PER_MONTH), 38.89),
    ]
    assert inc.at == {6: 16.67, 12: 16.67, 16: 38.89}
    assert (inc.infusions, inc.events) == (6, 2)


def test_it_stays_below_one_minus_kaplan_meier_when_deaths_are_censored_there():
    competing = incidence_aj([(100, CANCER), (50, DEATH), (400, CANCER), (500, CENSORED)])
    censoring = incidence_aj([(100, CANCER), (50, CENSORED), (400, CANCER), (500, CENSORED)])
    assert competing.steps[-1][1] < censoring.steps[-1][1]


def test_it_counts_cancers_before_censorings_on_the_same_day():
    inc = incidence_aj([(100, CANCER), (100, CENSORED), (100, CENSORED), (200, CENSORED)])
    assert inc.steps == [(pytest.approx(100 / DAYS_PER_MONTH), 25.0)]
