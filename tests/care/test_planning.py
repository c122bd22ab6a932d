"""The planner writes the engine's plan to the database and re-plans it without touching history."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection

from surveillance.care import lifecycle, planning
from surveillance.models import AuditEntry, FollowUpVisit, Reminder, VisitChange, VisitStatus
from surveillance.models.patients import FlagSource, RiskFlag
from surveillance.models.reminders import ReminderStatus
from tests.conftest import services_required

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 2, 1, 15, 0, tzinfo=dt.UTC)


def _visits(infusion):
    return {(v.rule_code, v.occurrence): v for v in FollowUpVisit.objects.filter(infusion=infusion)}


def test_it_runs_on_postgresql_when_ci_asks_for_services():
    if services_required():
        assert connection.vendor == "postgresql"


def test_it_writes_the_standard_plan_for_a_new_infusion(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a, birth_date=dt.date(1980, 1, 1)), prior_lines=2)
    diff = planning.infusion_plan(infusion, now=NOW)
    infusion.refresh_from_db()
    assert str(infusion.protocol) == "standard v2"
    visits = _visits(infusion)
    assert len(diff.added) == len(visits) > 20
    assert visits[("M3", 1)].due_date == dt.date(2026, 5, 1)  # 90 days after 31 Jan
    assert visits[("M12", 1)].due_date == dt.date(2027, 1, 31)


def test_it_picks_the_intensified_protocol_for_a_risk_flag(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), flags=["prior_auto_hct"])
    diff = planning.infusion_plan(infusion, now=NOW)
    infusion.refresh_from_db()
    assert infusion.protocol.variant == "intensified"
    assert "prior_auto_hct" in " ".join(diff.reasons)
    assert ("M9", 1) in _visits(infusion)


def test_it_changes_nothing_when_re_planned(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a))
    planning.infusion_plan(infusion, now=NOW)
    before = {(v.pk, v.due_date, v.status, v.sequence) for v in FollowUpVisit.objects.filter(infusion=infusion)}
    reminders = Reminder.objects.filter(visit__infusion=infusion).count()
    diff = planning.infusion_plan(infusion, now=NOW)
    assert diff.is_empty
    after = {(v.pk, v.due_date, v.status, v.sequence) for v in FollowUpVisit.objects.filter(infusion=infusion)}
    assert before == after
    assert Reminder.objects.filter(visit__infusion=infusion).count() == reminders


def test_it_moves_only_open_visits_when_the_infusion_date_is_corrected(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 10))
    planning.infusion_plan(infusion, now=dt.datetime(2026, 1, 9, tzinfo=dt.UTC))
    d14 = FollowUpVisit.objects.get(infusion=infusion, rule_code="D14")
    lifecycle.visit_mark_completed(d14, completed_on=dt.date(2026, 1, 24), now=NOW)
    d28 = FollowUpVisit.objects.get(infusion=infusion, rule_code="D28")
    lifecycle.visit_mark_missed(d28, reason="did not attend", now=dt.datetime(2026, 2, 20, tzinfo=dt.UTC))

    infusion.infusion_date = dt.date(2026, 1, 17)
    infusion.save()
    preview = planning.infusion_plan_preview(infusion)
    moved = {(m.rule_code, m.occurrence) for m in preview.moved}
    assert ("D14", 1) not in moved and ("D28", 1) not in moved
    assert ("M3", 1) in moved and not preview.removed

    planning.infusion_plan(infusion, confirm=preview.fingerprint(), now=dt.datetime(2026, 2, 21, tzinfo=dt.UTC))
    visits = _visits(infusion)
    assert visits[("D14", 1)].status == VisitStatus.COMPLETED
    assert visits[("D14", 1)].due_date == dt.date(2026, 1, 24)
    assert visits[("D28", 1)].status == VisitStatus.MISSED
    assert visits[("M3", 1)].due_date == dt.date(2026, 4, 17)
    assert visits[("M3", 1)].sequence == 1
    assert VisitChange.objects.filter(visit=visits[("M3", 1)], action="moved").count() == 1


def test_it_refuses_to_apply_a_plan_that_changed_since_the_preview(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a))
    planning.infusion_plan(infusion, now=NOW)
    infusion.infusion_date = dt.date(2026, 1, 25)
    infusion.save()
    stale = planning.infusion_plan_preview(infusion).fingerprint()
    infusion.infusion_date = dt.date(2026, 1, 20)
    infusion.save()
    with pytest.raises(planning.PlanChanged):
        planning.infusion_plan(infusion, confirm=stale, now=NOW)
    assert FollowUpVisit.objects.get(infusion=infusion, rule_code="M3").due_date == dt.date(2026, 5, 1)


def test_it_adds_intensified_visits_when_a_risk_flag_appears_and_keeps_history(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2025, 1, 15))
    planning.infusion_plan(infusion, now=dt.datetime(2025, 1, 14, tzinfo=dt.UTC))
    m6 = FollowUpVisit.objects.get(infusion=infusion, rule_code="M6")
    lifecycle.visit_mark_completed(m6, completed_on=m6.due_date, now=dt.datetime(2025, 8, 1, tzinfo=dt.UTC))

    RiskFlag.objects.create(
        infusion=infusion,
        code="clonal_haematopoiesis",
        detail="TET2 3%",
        source=FlagSource.NGS_REPORT,
        observed_on=dt.date(2026, 1, 20),
    )
    diff = planning.infusion_plan(infusion, reason="CH found at M12", now=NOW)
    assert diff.protocol_to == "intensified v2"
    added = {(a.rule_code, a.occurrence) for a in diff.added}
    assert ("M15_21", 1) in added
    visits = _visits(infusion)
    assert visits[("M6", 1)].status == VisitStatus.COMPLETED
    # M9 (October 2025) was already past when the flag arrived: planned after the fact, so not a missed visit but
    # one whose outcome is still to be recorded.
    assert visits[("M9", 1)].status == VisitStatus.UNRECORDED
    assert visits[("M9", 1)].status_reason == planning.WINDOW_CLOSED_REASON
    assert visits[("M15_21", 1)].status == VisitStatus.SCHEDULED


def test_it_cancels_removed_visits_and_their_pending_reminders(centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a), flags=["ebv_positive"], infusion_date=dt.date(2026, 1, 20))
    planning.infusion_plan(infusion, now=NOW)
    m9 = FollowUpVisit.objects.get(infusion=infusion, rule_code="M3")
    assert Reminder.objects.filter(visit=m9, status=ReminderStatus.PENDING).exists()
    RiskFlag.objects.filter(infusion=infusion).delete()
    diff = planning.infusion_plan(infusion, reason="flag entered in error", now=NOW)
    removed = {(r.rule_code, r.occurrence) for r in diff.removed}
    assert ("M9", 1) in removed
    m9 = FollowUpVisit.objects.get(infusion=infusion, rule_code="M9")
    assert m9.status == VisitStatus.CANCELLED and m9.planner_cancelled
    # Re-adding the flag restores the same visit rather than creating a second one.
    RiskFlag.objects.create(
        infusion=infusion, code="ebv_positive", source=FlagSource.LAB_RESULT, observed_on=NOW.date()
    )
    planning.infusion_plan(infusion, now=NOW)
    m9.refresh_from_db()
    assert m9.status == VisitStatus.SCHEDULED
    assert FollowUpVisit.objects.filter(infusion=infusion, rule_code="M9").count() == 1


def test_it_stops_the_old_schedule_when_a_patient_is_re_infused(centre_a, make_patient, make_infusion):
    patient = make_patient(centre_a)
    first = make_infusion(patient, infusion_date=dt.date(2025, 6, 1))
    planning.infusion_plan(first, now=dt.datetime(2025, 5, 31, tzinfo=dt.UTC))
    second = make_infusion(patient, product="breyanzi", infusion_date=dt.date(2026, 1, 20))
    planning.infusion_plan(second, now=NOW)
    planning.infusion_supersede_earlier(second)
    assert not FollowUpVisit.objects.filter(infusion=first, status=VisitStatus.SCHEDULED).exists()
    assert FollowUpVisit.objects.filter(infusion=second, status=VisitStatus.SCHEDULED).count() > 20
    first.refresh_from_db()
    assert first.superseded_by == second


def test_it_plans_conditional_visits_only_after_a_recorded_decision(centre_a, physician_a, make_patient, make_infusion):
    from surveillance.models import ConditionDecision

    infusion = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 5))
    planning.infusion_plan(infusion, now=dt.datetime(2026, 1, 4, tzinfo=dt.UTC))
    assert not FollowUpVisit.objects.filter(infusion=infusion, rule_code="M2").exists()

    ConditionDecision.objects.create(
        infusion=infusion,
        condition="counts_low",
        active=True,
        until=dt.date(2026, 5, 31),
        reason="ANC 0.8 and IgG 310 mg/dL at day 28",
        decided_on=dt.date(2026, 2, 2),
        decided_by=physician_a,
    )
    diff = planning.infusion_plan(infusion, by=physician_a, reason="counts low at D28", now=NOW)
    added = sorted((a.rule_code, a.occurrence, a.due_date) for a in diff.added)
    # Month 3 (2026-04-05) falls inside the second monthly check's window: that check is done at the month-3
    # visit, which asks for the monthly counts too, rather than bringing the patient in twice.
    assert added == [
        ("M2", 1, dt.date(2026, 3, 5)),
        ("M2", 3, dt.date(2026, 5, 5)),
    ]
    month3 = FollowUpVisit.objects.get(infusion=infusion, rule_code="M3")
    assert "cbc_diff" in month3.assessments
    ConditionDecision.objects.filter(infusion=infusion).update(active=False)
    diff = planning.infusion_plan(infusion, by=physician_a, reason="counts recovered", now=NOW)
    assert {(r.rule_code, r.occurrence) for r in diff.removed} == {("M2", 1), ("M2", 3)}
    month3.refresh_from_db()
    assert "cbc_diff" not in month3.assessments


def _planned_rows(infusion) -> dict:
    """What planning wrote for an infusion, without the ids that differ between two equal infusions."""
    infusion.refresh_from_db()
    visits = FollowUpVisit.objects.filter(infusion=infusion).order_by("rule_code", "occurrence")
    reminders = Reminder.objects.filter(visit__infusion=infusion).order_by("idempotency_key")
    audit = AuditEntry.objects.filter(object_type="infusion", object_id=str(infusion.pk)).order_by("pk")
    return {
        "protocol": infusion.protocol_id,
        "visits": [
            (
                v.rule_code,
                v.occurrence,
                v.rule_id,
                v.label,
                v.kind,
                v.due_date,
                v.window_start,
                v.window_end,
                v.assessments,
                v.status,
                v.status_reason,
                v.status_changed_at,
                v.sequence,
                v.reminders_planned_for,
                v.planner_cancelled,
            )
            for v in visits
        ],
        "reminders": [
            (
                r.idempotency_key.split(":", 1)[1],
                r.visit.rule_code,
                r.visit.occurrence,
                r.audience,
                r.purpose,
                r.days_before,
                r.send_after,
                r.next_attempt_at,
                r.status,
            )
            for r in reminders
        ],
        "history": VisitChange.objects.filter(visit__infusion=infusion).count(),
        "audit": [(a.action, a.actor_label, a.patient_id == infusion.patient_id, a.changes) for a in audit],
    }


def test_it_plans_a_batch_of_new_infusions_as_it_plans_them_one_by_one(centre_a, centre_b, make_patient, make_infusion):
    # Recent (reminders in the look-ahead), old (windows closed), risk-intensified, another centre's time zone,
    # a patient's own time zone, a patient no longer followed, and one already planned (re-planned as usual).
    specs = [
        (centre_a, {}, {"infusion_date": dt.date(2026, 1, 20)}),
        (centre_a, {}, {"infusion_date": dt.date(2019, 3, 4), "product": "breyanzi"}),
        (centre_a, {}, {"infusion_date": dt.date(2025, 11, 2), "flags": ["prior_auto_hct"]}),
        (centre_b, {}, {"infusion_date": dt.date(2025, 12, 28)}),
        (centre_a, {"time_zone": "Asia/Tokyo"}, {"infusion_date": dt.date(2026, 1, 30)}),
        (
            centre_a,
            {"status": "withdrawn", "status_date": dt.date(2026, 1, 15)},
            {"infusion_date": dt.date(2026, 1, 10)},
        ),
    ]
    batch, single = [], []
    for centre, patient_fields, infusion_fields in specs:
        batch.append(make_infusion(make_patient(centre, **patient_fields), **infusion_fields))
        single.append(make_infusion(make_patient(centre, **patient_fields), **infusion_fields))
    planned = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 5))
    planning.infusion_plan(planned, now=NOW)
    planned_twin = make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 5))
    planning.infusion_plan(planned_twin, now=NOW)
    planned.infusion_date = planned_twin.infusion_date = dt.date(2026, 1, 12)
    planned.save()
    planned_twin.save()

    diffs = planning.infusions_plan_new([*batch, planned], reason="EHR import", now=NOW)
    one_by_one = [planning.infusion_plan(i, reason="EHR import", now=NOW) for i in [*single, planned_twin]]

    assert [d.summary() for d in diffs] == [d.summary() for d in one_by_one]
    assert [(d.protocol_from, d.protocol_to, d.reasons, len(d.added)) for d in diffs] == [
        (d.protocol_from, d.protocol_to, d.reasons, len(d.added)) for d in one_by_one
    ]
    assert diffs[-1].moved  # the planned infusion was re-planned, not planned afresh
    for mine, theirs in zip([*batch, planned], [*single, planned_twin], strict=True):
        assert _planned_rows(mine) == _planned_rows(theirs)
    rows = [_planned_rows(i) for i in batch]
    assert any(r["reminders"] for r in rows)
    assert any(v[9] == VisitStatus.UNRECORDED for v in rows[1]["visits"])
    assert rows[0]["protocol"] != rows[2]["protocol"]
    # Planning the batch again changes nothing.
    again = planning.infusions_plan_new(batch, now=NOW)
    assert all(d.is_empty for d in again)
    assert [_planned_rows(i) for i in batch] == rows


def test_it_gives_a_batch_one_object_per_centre_and_per_product(
    centre_a, centre_b, make_patient, make_infusion, monkeypatch
):
    # One centre object per centre: its clinic calendar (closures read through the cache) is then built once.
    from surveillance.models import TreatmentCentre

    batch = [make_infusion(make_patient(c)) for c in (centre_a, centre_a, centre_a, centre_b, centre_b)]
    batch.append(make_infusion(make_patient(centre_a), product="breyanzi"))
    seen: list[TreatmentCentre] = []
    calendar = TreatmentCentre.calendar
    monkeypatch.setattr(TreatmentCentre, "calendar", lambda centre: seen.append(centre) or calendar(centre))
    spied = planning._facts
    products = []
    monkeypatch.setattr(
        planning, "_facts", lambda infusion, *rest: products.append(infusion.product) or spied(infusion, *rest)
    )

    planning.infusions_plan_new(batch, now=NOW)

    assert len(seen) == len(batch) and len({id(centre) for centre in seen}) == 2
    assert sorted(p.code for p in products) == ["breyanzi", *["yescarta"] * 5]
    assert len({id(product) for product in products}) == 2


def test_an_ndjson_import_plans_its_new_infusions_as_one_by_one_planning_would(centre_a, monkeypatch, tmp_path):
    from django.utils import timezone

    from bench._common import write_bulk_export
    from surveillance.imports import ehr_import
    from surveillance.models import Infusion, ProductCode, TreatmentCentre

    monkeypatch.setattr(timezone, "now", lambda: NOW)
    twin = TreatmentCentre.objects.create(
        code="twin", name="Twin", time_zone=centre_a.time_zone, care_team_email="team-a@example.org"
    )
    rows = [
        {"system": r["system"], "code": r["code"], "product": r["product__code"], "marks_infusion": r["marks_infusion"]}
        for r in ProductCode.objects.values("system", "code", "product__code", "marks_infusion")
    ]
    export = tmp_path / "export.ndjson"
    write_bulk_export(export, 12, rows, first=dt.date(2018, 1, 1), last=dt.date(2026, 1, 30))
    lines = export.read_text().splitlines(keepends=True)
    # A re-infusion of a patient in the same batch (planned at once, superseding the first), and a bad line.
    reinfusion = json.loads(lines[12])
    reinfusion.update(id="again", effectiveDateTime="2026-01-25")
    lines += [json.dumps(reinfusion) + "\n", "{not json\n"]

    batched = ehr_import.ndjson_import(lines, centre_a, batch_lines=10)
    monkeypatch.setattr(
        planning,
        "infusions_plan_new",
        lambda infusions, **kw: [planning.infusion_plan(i, **kw) for i in infusions],
    )
    one_by_one = ehr_import.ndjson_import(lines, twin, batch_lines=10)

    assert batched.as_dict() == one_by_one.as_dict()
    assert batched.infusions_created == 13 and batched.error_count == 1, batched.errors
    assert batched.errors[0].line == len(lines)
    assert Infusion.objects.filter(patient__centre=centre_a, superseded_by__isnull=False).count() == 1
    for mine in Infusion.objects.filter(patient__centre=centre_a):
        theirs = Infusion.objects.get(patient__centre=twin, source_id=mine.source_id)
        assert (mine.superseded_by is None) == (theirs.superseded_by is None)
        assert _planned_rows(mine) == _planned_rows(theirs)
    again = ehr_import.ndjson_import(lines, centre_a, batch_lines=10)
    assert not again.changed and again.visits_planned == 0
