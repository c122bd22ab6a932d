"""The visit worklists at registry scale keep their meaning: the recently-missed list reads in the order its
windows closed, and the filter by protocol rule offers the protocols' rule codes and filters by them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.models import FollowUpVisit, ProtocolRule, VisitStatus
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
VISITS = reverse("admin:surveillance_followupvisit_changelist")


def _missed(visit: FollowUpVisit, *, due: dt.date, after: int) -> FollowUpVisit:
    visit = visit_set(visit, due=due, after=after)
    FollowUpVisit.objects.filter(pk=visit.pk).update(status=VisitStatus.MISSED, status_reason="Not attended")
    return visit


def test_it_lists_recently_missed_visits_in_the_order_their_windows_closed(
    login, coordinator_a, centre_a, planned, today
):
    # due earlier but with the longer window: its window closed last, so it comes last
    late_closing = _missed(scheduled(planned(centre_a), "M3"), due=today - 60 * DAY, after=50)
    early_closing = _missed(scheduled(planned(centre_a), "M3"), due=today - 40 * DAY, after=10)
    response = login(coordinator_a).get(VISITS, {"worklist": "missed"})
    assert [v.pk for v in response.context["cl"].result_list] == [early_closing.pk, late_closing.pk]


def test_it_filters_visits_by_a_rule_code_of_the_protocols(login, coordinator_a, centre_a, planned):
    infusion = planned(centre_a)
    response = login(coordinator_a).get(VISITS, {"rule_code": "M3"})
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert [v.rule_code for v in rows] == ["M3"] and rows[0] == scheduled(infusion, "M3")
    rule_filter = next(
        f for f in response.context["cl"].filter_specs if getattr(f, "parameter_name", "") == "rule_code"
    )
    offered = [code for code, _label in rule_filter.lookup_choices]
    assert offered == sorted(set(ProtocolRule.objects.values_list("code", flat=True)))
    assert "M3" in offered
