"""Protocol upgrade: preview a new version against the cohort, applied by a physician, history untouched, audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from surveillance.care.protocol_upgrade import protocol_upgrade_preview
from surveillance.models import AuditEntry, FollowUpVisit, ProtocolStatus, VisitStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def cohort(planned, centre_a, centre_b):
    a1, a2 = planned(centre_a, days_ago=60), planned(centre_a, days_ago=70)
    b1 = planned(centre_b, days_ago=60)
    d28 = FollowUpVisit.objects.get(infusion=a1, rule_code="D28")
    FollowUpVisit.objects.filter(pk=d28.pk).update(
        status=VisitStatus.COMPLETED, completed_on=d28.due_date, status_reason=""
    )
    d28.refresh_from_db()
    return {"a": [a1, a2], "b": [b1], "completed": d28}


def test_it_previews_the_upgrade_against_the_centres_cohort(login, coordinator_a, standard_v2, cohort):
    response = login(coordinator_a).get(reverse("admin:protocol_upgrade", args=[standard_v2.pk]))
    assert response.status_code == 200
    preview = response.context["preview"]
    assert (preview.patients, preview.infusions) == (2, 2)  # centre B's patient is not counted
    assert preview.moved == 2 and preview.added == 2 and preview.removed == 2
    assert b"Only a physician can apply" in response.content


def test_it_is_applied_by_a_physician_without_touching_history(login, physician_a, standard_v2, cohort):
    client = login(physician_a)
    url = reverse("admin:protocol_upgrade", args=[standard_v2.pk])
    fingerprint = client.get(url).context["preview"].fingerprint()
    completed = cohort["completed"]
    response = client.post(url, {"fingerprint": fingerprint})
    assert response.status_code == 302
    standard_v2.refresh_from_db()
    assert standard_v2.status == ProtocolStatus.ACTIVE and standard_v2.activated_by == physician_a
    for infusion in cohort["a"]:
        infusion.refresh_from_db()
        assert infusion.protocol == standard_v2
        assert FollowUpVisit.objects.get(infusion=infusion, rule_code="D270").status == VisitStatus.SCHEDULED
        assert FollowUpVisit.objects.get(infusion=infusion, rule_code="M6").status == VisitStatus.CANCELLED
    cohort["b"][0].refresh_from_db()
    assert cohort["b"][0].protocol != standard_v2
    after = FollowUpVisit.objects.get(pk=completed.pk)
    assert (after.status, after.due_date, after.window_start, after.sequence) == (
        completed.status,
        completed.due_date,
        completed.window_start,
        completed.sequence,
    )
    entry = AuditEntry.objects.get(action="protocol_upgrade", object_id=str(standard_v2.pk))
    assert entry.actor == physician_a and entry.remote_addr == "10.1.2.3"
    assert sorted(entry.changes["infusion_ids"]) == sorted(i.pk for i in cohort["a"])


def test_it_refuses_a_coordinator_and_a_stale_preview(login, coordinator_a, physician_a, standard_v2, cohort):
    url = reverse("admin:protocol_upgrade", args=[standard_v2.pk])
    fingerprint = protocol_upgrade_preview(standard_v2, None).fingerprint()
    assert login(coordinator_a).post(url, {"fingerprint": fingerprint}).status_code == 403
    stale = login(physician_a).post(url, {"fingerprint": "stale"})
    assert stale.status_code == 409
    standard_v2.refresh_from_db()
    assert standard_v2.status == ProtocolStatus.DRAFT
    assert not FollowUpVisit.objects.filter(rule_code="D270").exists()


def test_it_lists_versions_with_infusions_to_upgrade(login, physician_a, standard_v2, cohort):
    response = login(physician_a).get(reverse("admin:protocol_upgrade_list"))
    assert [(p.pk, n) for p, n in response.context["targets"]] == [(standard_v2.pk, 2)]
