"""List pages count the rows of their filter only, not the whole scoped table beside it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _counts(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith("SELECT COUNT(*)")]


def test_it_counts_a_worklist_once(planned, centre_a, login, coordinator_a):
    planned(centre_a, days_ago=300)
    url = reverse("admin:surveillance_followupvisit_changelist") + "?worklist=overdue"
    assert len(_counts(login(coordinator_a), url)) == 1


def test_it_counts_a_search_once(planned, centre_a, login, coordinator_a):
    planned(centre_a, days_ago=300)
    url = reverse("admin:surveillance_patient_changelist") + "?q=zzz"
    assert len(_counts(login(coordinator_a), url)) == 1
