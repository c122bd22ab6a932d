"""A centre's calendar settings: a country and region the holiday table knows, weekdays 0-6, its own closures."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

pytestmark = pytest.mark.django_db


def test_it_refuses_a_country_or_region_the_holiday_table_does_not_know(centre_a):
    centre_a.country = "XX"
    with pytest.raises(ValidationError) as excinfo:
        centre_a.full_clean()
    assert "country" in excinfo.value.message_dict
    centre_a.country, centre_a.subdivision = "US", "ZZ"
    with pytest.raises(ValidationError) as excinfo:
        centre_a.full_clean()
    assert "subdivision" in excinfo.value.message_dict


def test_it_refuses_a_weekday_outside_the_week(centre_a):
    centre_a.closed_weekdays = [5, 7]
    with pytest.raises(ValidationError) as excinfo:
        centre_a.full_clean()
    assert "closed_weekdays" in excinfo.value.message_dict


def test_it_refuses_a_region_without_a_country_in_the_database(centre_a):
    centre_a.subdivision = "NY"
    with pytest.raises(IntegrityError):
        centre_a.save()


def test_it_closes_on_holidays_weekdays_and_the_centres_own_days(centre_a):
    centre_a.country, centre_a.subdivision, centre_a.closed_weekdays = "US", "NY", [6]
    centre_a.save()
    centre_a.closures.create(day=dt.date(2026, 12, 1), reason="staff training")
    centre_a.closures_changed()
    calendar = centre_a.calendar()
    assert calendar.is_closed(dt.date(2026, 12, 25))  # Christmas
    assert calendar.is_closed(dt.date(2026, 12, 6))  # a Sunday
    assert not calendar.is_closed(dt.date(2026, 12, 5))  # a Saturday: this clinic opens then
    assert calendar.is_closed(dt.date(2026, 12, 1))


def test_it_reads_the_closures_once_an_instance_until_told_they_changed(centre_a):
    centre_a.calendar()
    centre_a.closures.create(day=dt.date(2026, 12, 1), reason="staff training")
    assert not centre_a.calendar().is_closed(dt.date(2026, 12, 1))  # read before the change, until told
    centre_a.closures_changed()
    assert centre_a.calendar().is_closed(dt.date(2026, 12, 1))
