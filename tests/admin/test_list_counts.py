"""List pages count the rows of their filter only, not the whole scoped table beside it, and those up to a cap
("1000+"): either count would grow with the cohort."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from surveillance.admin.worklists import COUNT_CAP, WORKLISTS

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


@pytest.mark.parametrize("key", [w.key for w in WORKLISTS])
def test_it_counts_every_worklist_up_to_the_cap(key, planned, centre_a, login, coordinator_a):
    planned(centre_a, days_ago=300)
    worklist = next(w for w in WORKLISTS if w.key == key)

    counts = _counts(login(coordinator_a), worklist.url())

    assert counts and all(f"LIMIT {COUNT_CAP + 1}" in sql for sql in counts), counts


def test_it_counts_undelivered_reminders_up_to_the_cap(planned, centre_a, login, coordinator_a):
    from django.utils import timezone

    from surveillance.models import Reminder, ReminderStatus

    visit = planned(centre_a).visits.order_by("due_date").first()
    now = timezone.now()
    Reminder.objects.bulk_create(
        Reminder(
            visit=visit,
            audience="patient",
            purpose="upcoming",
            days_before=14,
            idempotency_key=f"bounced:{n}",
            send_after=now,
            next_attempt_at=now,
            status=ReminderStatus.BOUNCED,
            attempts=1,
            sequence=0,
        )
        for n in range(COUNT_CAP + 5)
    )
    client = login(coordinator_a)
    tile = next(
        item
        for item in client.get(reverse("admin:index")).context["worklists"]
        if item.worklist.key == "failed_reminders"
    )
    assert tile.count == COUNT_CAP + 1 and tile.more
    url = reverse("admin:surveillance_reminder_changelist") + "?worklist=failed_reminders"
    with CaptureQueriesContext(connection) as queries:
        page = client.get(url)
    assert f"{COUNT_CAP}+ reminders" in page.content.decode()
    assert f"All {COUNT_CAP}+ selected" in page.content.decode()
    assert any(f"LIMIT {COUNT_CAP + 1}" in q["sql"] for q in queries.captured_queries)
    # a short list says its exact count
    Reminder.objects.filter(idempotency_key__startswith="bounced:").exclude(idempotency_key="bounced:0").delete()
    assert "1 reminder\n" in client.get(url).content.decode()
