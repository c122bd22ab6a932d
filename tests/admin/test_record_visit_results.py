"""The record-visit form speaks in labels, not codes, and one click records a visit done with nothing abnormal;
a blood-count value in a unit that cannot be read is a form error, and nothing is saved."""

from __future__ import annotations

from django.urls import reverse

from surveillance.models import FollowUpVisit, VisitResult, VisitStatus

CBC_FAMILY = ("cbc_diff_smear", "cbc_diff", "cbc")


def visit_with_cbc(infusion) -> FollowUpVisit:
    visits = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.SCHEDULED).order_by("due_date")
    return next(v for v in visits if set(CBC_FAMILY) & set(v.assessments))


def test_it_completes_a_visit_with_nothing_abnormal_in_one_click(login, coordinator_a, centre_a, planned, today):
    visit = visit_with_cbc(planned(centre_a, days_ago=60))
    client = login(coordinator_a)
    url = reverse("admin:surveillance_followupvisit_change", args=[visit.pk])
    page = client.get(url)
    assert b"Done, nothing abnormal for the rest" in page.content
    assert b"Blood count with differential" in page.content and b"cbc_diff</label>" not in page.content
    response = client.post(url, {"action": "complete", "completed_on": today.isoformat(), "rest_normal": "1"})
    assert response.status_code == 302
    visit.refresh_from_db()
    assert (visit.status, visit.completed_on, visit.status_changed_by) == ("completed", today, coordinator_a)
    outcomes = dict(VisitResult.objects.filter(visit=visit).values_list("assessment", "outcome"))
    assert outcomes == dict.fromkeys(visit.assessments, "normal")
    assert b"Results recorded" in client.get(url).content


def test_it_shows_a_unit_it_cannot_read_as_a_form_error(login, coordinator_a, centre_a, planned, today):
    visit = visit_with_cbc(planned(centre_a, days_ago=60))
    url = reverse("admin:surveillance_followupvisit_change", args=[visit.pk])
    data = {
        "action": "complete",
        "completed_on": today.isoformat(),
        "value_platelets": "180",
        "unit_platelets": "per bucket",
        "rest_normal": "1",
    }
    response = login(coordinator_a).post(url, data)
    assert response.status_code == 400
    assert response.context["complete_form"].errors["unit_platelets"]
    visit.refresh_from_db()
    assert visit.status == VisitStatus.SCHEDULED and not VisitResult.objects.filter(visit=visit).exists()
