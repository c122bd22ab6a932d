"""The patient page: demographics, infusions, risk flags with sources, the timeline, reminders; and the
confirmed re-plan after a risk-flag or infusion-date change."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.care import lifecycle
from surveillance.models import AuditEntry, FollowUpVisit, ProtocolRule, Reminder, RiskFlag, VisitStatus

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def test_it_shows_infusions_flags_with_sources_the_timeline_and_reminders(login, coordinator_a, planned, centre_a):
    infusion = planned(centre_a, days_ago=400, flags=["clonal_haematopoiesis"])
    RiskFlag.objects.filter(infusion=infusion).update(detail="DNMT3A VAF 4%", source_reference="NGS-2024-17")
    response = login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Clonal haematopoiesis (CH/CHIP)" in html and "DNMT3A VAF 4%" in html and "NGS-2024-17" in html
    assert f'id="timeline-{infusion.pk}"' in html
    timeline = response.context["infusions"][0].timeline
    visits = FollowUpVisit.objects.filter(infusion=infusion)
    assert len(timeline.markers) + timeline.beyond == visits.count()
    next_due = visits.filter(status=VisitStatus.SCHEDULED).order_by("due_date").first()
    assert timeline.next_due == next_due
    assert sum(1 for m in timeline.markers if m["cls"] == "next") == 1
    assert {r.pk for r in response.context["reminders"]} == set(
        Reminder.objects.filter(visit__infusion=infusion).values_list("pk", flat=True)
    )


def _replan_data(infusion, **changes) -> dict:
    data = {
        "infusion_date": infusion.infusion_date.isoformat(),
        "flag_code": "",
        "flag_present": "1",
        "flag_source": "",
        "flag_detail": "",
        "flag_reference": "",
        "flag_observed_on": "",
        "reason": "New NGS report",
        "preview": "1",
    }
    data.update(changes)
    return data


def test_it_shows_the_diff_of_a_new_risk_flag_and_changes_nothing_until_confirmed(
    login, physician_a, planned, centre_a, today
):
    infusion = planned(centre_a, days_ago=60)
    assert infusion.protocol.variant == "standard"
    before = set(FollowUpVisit.objects.filter(infusion=infusion).values_list("pk", "due_date", "status"))
    client = login(physician_a)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    flag = {
        "flag_code": "prior_auto_hct",
        "flag_source": "treatment_history",
        "flag_observed_on": today.isoformat(),
        "flag_reference": "Discharge letter 2019",
    }
    preview = client.post(url, _replan_data(infusion, **flag))
    assert preview.status_code == 200
    diff = preview.context["diff"]
    assert diff.protocol_to.startswith("intensified") and diff.added
    assert b"Confirm and apply" in preview.content
    added = diff.added[0]
    own = ProtocolRule.objects.filter(code=added.rule_code).values_list("label", flat=True).first()
    assert f"Added: {own} #{added.occurrence}" in preview.content.decode()  # the visit's name, not its code
    assert not RiskFlag.objects.filter(infusion=infusion).exists()
    assert set(FollowUpVisit.objects.filter(infusion=infusion).values_list("pk", "due_date", "status")) == before

    confirm = client.post(url, _replan_data(infusion, **flag, confirm="1", fingerprint=diff.fingerprint()))
    assert confirm.status_code == 302
    infusion.refresh_from_db()
    assert infusion.protocol.variant == "intensified"
    flag_row = RiskFlag.objects.get(infusion=infusion)
    assert (flag_row.code, flag_row.source, flag_row.recorded_by) == (
        "prior_auto_hct",
        "treatment_history",
        physician_a,
    )
    assert FollowUpVisit.objects.filter(infusion=infusion).count() == len(before) + len(diff.added)
    assert AuditEntry.objects.filter(action="replan", object_id=str(infusion.pk), actor=physician_a).exists()


def test_it_refuses_a_confirmation_of_a_plan_that_moved_since_the_preview(login, physician_a, planned, centre_a):
    infusion = planned(centre_a, days_ago=60)
    count = FollowUpVisit.objects.filter(infusion=infusion).count()
    new_date = (infusion.infusion_date + 3 * DAY).isoformat()
    response = login(physician_a).post(
        reverse("admin:surveillance_infusion_replan", args=[infusion.pk]),
        _replan_data(infusion, infusion_date=new_date, confirm="1", fingerprint="0000000000000000"),
    )
    assert response.status_code == 200 and response.context["notice"]
    assert response.context["diff"].moved
    infusion.refresh_from_db()
    assert infusion.infusion_date != dt.date.fromisoformat(new_date)
    assert FollowUpVisit.objects.filter(infusion=infusion).count() == count


def test_it_moves_open_visits_and_keeps_history_when_the_infusion_date_is_corrected(
    login, physician_a, planned, centre_a
):
    infusion = planned(centre_a, days_ago=60)
    unrecorded = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.UNRECORDED).order_by("due_date")
    lifecycle.visit_mark_completed(unrecorded[0], completed_on=unrecorded[0].due_date, by=physician_a)
    # Still unrecorded (planned after their window closed): not history, they move with the date.
    open_before = dict(unrecorded.values_list("pk", "due_date"))
    settled = set(
        FollowUpVisit.objects.filter(infusion=infusion)
        .exclude(status__in=(VisitStatus.SCHEDULED, VisitStatus.UNRECORDED))
        .values_list("pk", "due_date", "status")
    )
    assert settled and open_before
    client = login(physician_a)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    new_date = (infusion.infusion_date + 2 * DAY).isoformat()
    preview = client.post(url, _replan_data(infusion, infusion_date=new_date, reason="Date typo"))
    diff = preview.context["diff"]
    assert diff.moved and b"(window closed: not recorded)" in preview.content
    response = client.post(
        url,
        _replan_data(infusion, infusion_date=new_date, reason="Date typo", confirm="1", fingerprint=diff.fingerprint()),
    )
    assert response.status_code == 302
    infusion.refresh_from_db()
    assert infusion.infusion_date.isoformat() == new_date
    moved = FollowUpVisit.objects.get(pk=diff.moved[0].visit_id)
    assert moved.due_date == diff.moved[0].new_due
    still = set(
        FollowUpVisit.objects.filter(pk__in=[pk for pk, _, _ in settled]).values_list("pk", "due_date", "status")
    )
    assert still == settled
    after = dict(FollowUpVisit.objects.filter(pk__in=open_before).values_list("pk", "due_date"))
    assert after == {pk: due + 2 * DAY for pk, due in open_before.items()}
    assert {m.visit_id for m in diff.moved} >= set(open_before)


def test_it_rejects_an_empty_or_impossible_change_with_field_messages(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=60)
    client = login(physician_a)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    nothing = client.post(url, _replan_data(infusion))
    assert nothing.status_code == 400 and nothing.context["form"].non_field_errors()
    future = client.post(url, _replan_data(infusion, infusion_date=(today + DAY).isoformat()))
    assert future.status_code == 400 and "infusion_date" in future.context["form"].errors
    no_source = client.post(url, _replan_data(infusion, flag_code="ebv_positive"))
    assert no_source.status_code == 400 and "flag_source" in no_source.context["form"].errors


def test_it_refuses_a_corrected_date_before_birth_or_after_death(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=60, birth_date=today - 70 * DAY)
    client = login(physician_a)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    unborn = client.post(url, _replan_data(infusion, infusion_date=(today - 80 * DAY).isoformat()))
    assert unborn.status_code == 400
    assert unborn.context["form"].errors["infusion_date"] == ["The infusion date is before the patient's birth date."]
    lifecycle.patient_close(infusion.patient, status="deceased", on=today - 50 * DAY, reason="Died")
    dead = client.post(url, _replan_data(infusion, infusion_date=(today - 40 * DAY).isoformat()))
    assert dead.status_code == 400
    assert dead.context["form"].errors["infusion_date"] == [
        "The infusion date is after the patient's recorded date of death."
    ]
    infusion.refresh_from_db()
    assert infusion.infusion_date == today - 60 * DAY


def test_it_records_a_visit_planned_after_its_window_closed(login, physician_a, planned, centre_a):
    infusion = planned(centre_a, days_ago=60)
    visit = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.UNRECORDED).first()
    client = login(physician_a)
    url = reverse("admin:surveillance_followupvisit_change", args=[visit.pk])
    page = client.get(url)
    assert b"Record visit done" in page.content and b"reschedule-form" not in page.content
    data = {"action": "complete", "completed_on": visit.due_date.isoformat()}
    data.update({name: "normal" for name in page.context["complete_form"].fields if name.startswith("result_")})
    assert client.post(url, data).status_code == 302
    visit.refresh_from_db()
    assert (visit.status, visit.completed_on) == (VisitStatus.COMPLETED, visit.due_date)


def test_it_lets_only_physicians_change_flags_or_dates(login, coordinator_a, planned, centre_a):
    infusion = planned(centre_a, days_ago=60)
    url = reverse("admin:surveillance_infusion_replan", args=[infusion.pk])
    assert login(coordinator_a).get(url).status_code == 403
