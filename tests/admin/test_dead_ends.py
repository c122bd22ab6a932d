"""A refusal (403) or a missing page (404) in the admin is a page of the admin that says what happened and leads
back, never a bare error."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.models import FollowUpVisit, VisitStatus
from tests.admin.conftest import scheduled, visit_set

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


@pytest.fixture
def visit(centre_a, planned, today) -> FollowUpVisit:
    return visit_set(scheduled(planned(centre_a), "M3"), due=today - 3 * DAY)


def _assert_admin_page(response, status: int) -> str:
    assert response.status_code == status
    body = response.content.decode()
    assert 'id="header"' in body and "CAR-T Watch" in body  # the admin's look
    assert f'href="{reverse("admin:index")}"' in body  # the way home
    return body


def test_it_answers_an_auditors_attempt_to_change_with_a_friendly_403(login, auditor, visit):
    url = reverse("admin:surveillance_followupvisit_change", args=[visit.pk])
    client = login(auditor)
    response = client.post(url, {"action": "cancel", "reason": "x"}, HTTP_REFERER=f"http://testserver{url}")
    body = _assert_admin_page(response, 403)
    assert "You cannot do this here" in body and "Nothing was changed." in body
    assert f'href="http://testserver{url}"' in body  # back to the page the auditor came from
    assert FollowUpVisit.objects.get(pk=visit.pk).status == VisitStatus.SCHEDULED


def test_it_answers_a_forbidden_page_with_the_same_403(login, coordinator_a):
    response = login(coordinator_a).get(reverse("admin:surveillance_malignancyevent_add"))
    assert "You cannot do this here" in _assert_admin_page(response, 403)


def test_it_answers_an_unknown_admin_address_with_a_friendly_404(login, coordinator_a):
    response = login(coordinator_a).get("/admin/surveillance/no-such-list/")
    assert "Page not found" in _assert_admin_page(response, 404)


def test_it_answers_another_centres_visit_with_the_404_and_no_detail(login, physician_b, visit):
    response = login(physician_b).get(reverse("admin:surveillance_followupvisit_change", args=[visit.pk]))
    body = _assert_admin_page(response, 404)
    assert "Page not found" in body and "matches the given query" not in body


def test_it_offers_no_way_back_to_another_site(login, coordinator_a):
    response = login(coordinator_a).get("/admin/surveillance/no-such-list/", HTTP_REFERER="https://evil.example/")
    assert "evil.example" not in _assert_admin_page(response, 404)


def test_it_still_sends_a_signed_out_visitor_to_the_sign_in_page(client, visit):
    response = client.get(reverse("admin:surveillance_followupvisit_change", args=[visit.pk]))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
