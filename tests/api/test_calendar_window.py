"""A centre's calendar feed covers a bounded window by default, which the parameters move, up to a maximum span."""

from __future__ import annotations

import datetime as dt

import icalendar
from django.utils import timezone

from surveillance.models import FollowUpVisit


def days_in_feed(client, centre, query: str = "") -> set[dt.date]:
    response = client.get(f"/api/v1/centres/{centre.pk}/calendar.ics{query}")
    assert response.status_code == 200, response.content
    return {event.decoded("DTSTART") for event in icalendar.Calendar.from_ical(response.content).walk("VEVENT")}


def test_it_covers_a_month_back_to_six_months_ahead_by_default(api_a, planned_a, centre_a):
    _, infusion = planned_a
    today = timezone.localdate()
    dues = set(FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").values_list("due_date", flat=True))
    inside = {d for d in dues if today - dt.timedelta(days=30) <= d <= today + dt.timedelta(days=180)}
    assert inside and dues - inside  # the planned schedule reaches past the window
    assert days_in_feed(api_a, centre_a) == inside


def test_it_moves_the_whole_window_when_given_one_bound(api_a, planned_a, centre_a):
    _, infusion = planned_a
    start = timezone.localdate() + dt.timedelta(days=300)
    dues = set(FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").values_list("due_date", flat=True))
    expected = {d for d in dues if start <= d <= start + dt.timedelta(days=210)}
    assert expected
    assert days_in_feed(api_a, centre_a, f"?due_after={start}") == expected


def test_it_refuses_a_window_longer_than_the_maximum(api_a, planned_a, centre_a):
    response = api_a.get(f"/api/v1/centres/{centre_a.pk}/calendar.ics?due_after=2026-01-01&due_before=2030-01-01")
    assert response.status_code == 400
    assert response.json()["fields"] == {"due_before": ["the range may span at most 400 days"]}
