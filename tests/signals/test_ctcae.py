"""CTCAE v5.0 grades of the cytopenias and lymphocytosis, at every grade boundary."""

from __future__ import annotations

import pytest

from surveillance.signals.ctcae import Measure, ctcae_grade


@pytest.mark.parametrize(
    ("value", "grade"),
    [(2.1, 0), (2.0, 0), (1.99, 1), (1.5, 1), (1.49, 2), (1.0, 2), (0.99, 3), (0.5, 3), (0.49, 4), (0.0, 4)],
)
def test_it_grades_neutrophils_at_the_boundaries(value, grade):
    assert ctcae_grade(Measure.NEUTROPHILS, value, lln=2.0) == grade


@pytest.mark.parametrize(
    ("value", "grade"),
    [(150, 0), (149, 1), (75, 1), (74.9, 2), (50, 2), (49.9, 3), (25, 3), (24.9, 4)],
)
def test_it_grades_platelets_at_the_boundaries(value, grade):
    assert ctcae_grade(Measure.PLATELETS, value, lln=150) == grade


@pytest.mark.parametrize(("value", "grade"), [(12.0, 0), (11.9, 1), (10.0, 1), (9.9, 2), (8.0, 2), (7.9, 3), (4.0, 3)])
def test_it_grades_anaemia_at_the_boundaries_and_stops_at_grade_3(value, grade):
    assert ctcae_grade(Measure.HAEMOGLOBIN, value, lln=12.0) == grade


@pytest.mark.parametrize(("value", "grade"), [(1.0, 0), (4.0, 0), (4.01, 2), (20.0, 2), (20.01, 3)])
def test_it_grades_lymphocyte_count_increased_without_a_grade_1(value, grade):
    assert ctcae_grade("lymphocytes", value) == grade


def test_it_gives_no_grade_1_without_a_lower_limit_of_normal():
    assert ctcae_grade(Measure.NEUTROPHILS, 1.7) == 0
    assert ctcae_grade(Measure.NEUTROPHILS, 1.4) == 2
