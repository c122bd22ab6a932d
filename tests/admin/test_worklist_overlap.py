"""The visit worklists do not overlap: a scheduled visit is coming up, then its window is open, then (once its due
date has passed) it is overdue, and only that."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
VISIT_LISTS = ("due14", "window_open", "overdue")


def _lists_of(client) -> dict[str, set[int]]:
    url = reverse("admin:surveillance_followupvisit_changelist")
    return {
        key: {obj.pk for obj in client.get(url, {"worklist": key}).context["cl"].result_list} for key in VISIT_LISTS
    }


def test_it_puts_each_scheduled_visit_in_one_visit_worklist_at_most(login, coordinator_a, centre_a, planned, today):
    # (days from today to the due date, days the window opens before it, where the visit belongs)
    cases = [
        (10, 5, "due14"),  # window opens in 5 days
        (3, 5, "window_open"),  # window open, due in 3 days
        (0, 5, "window_open"),  # due today
        (-1, 5, "overdue"),  # a day late, window still open
        (-55, 5, "overdue"),  # late and its window closed: not yet swept to missed
    ]
    visits = {}
    for offset, before, expected in cases:
        visit = visit_set(scheduled(planned(centre_a), "M3"), due=today + offset * DAY, before=before, after=20)
        visits[visit.pk] = expected
    lists = _lists_of(login(coordinator_a))
    for pk, expected in visits.items():
        assert [key for key in VISIT_LISTS if pk in lists[key]] == [expected]


def test_it_counts_on_the_index_what_the_lists_show(login, coordinator_a, centre_a, planned, today):
    visit_set(scheduled(planned(centre_a), "M3"), due=today - 2 * DAY)
    client = login(coordinator_a)
    counts = {item.worklist.key: item.count for item in client.get(reverse("admin:index")).context["worklists"]}
    lists = _lists_of(client)
    assert {key: counts[key] for key in VISIT_LISTS} == {key: len(ids) for key, ids in lists.items()}
