"""Risk flags through the API: recorded with an infusion or later, each change re-plans the schedule."""

from __future__ import annotations

import datetime as dt

from surveillance.models import AuditEntry, FollowUpVisit, Infusion, RiskFlag, VisitChange


def _ch_flag(**extra) -> dict:
    return {
        "code": "clonal_haematopoiesis",
        "source": "ngs_report",
        "observed_on": (dt.date.today() - dt.timedelta(days=3)).isoformat(),
        "detail": "DNMT3A 4%, TET2 2%",
        "findings": [{"gene": "DNMT3A", "vaf_percent": 4.0}, {"gene": "TET2", "vaf_percent": 2}],
        "source_reference": "NGS-2026-114",
        **extra,
    }


def test_it_keeps_the_flags_sent_with_a_new_infusion_and_plans_for_them(api_a, centre_a, make_patient):
    patient = make_patient(centre_a, birth_date=dt.date(1980, 1, 1))
    day = dt.date.today() - dt.timedelta(days=10)
    response = api_a.post(
        "/api/v1/infusions",
        {"patient": patient.pk, "product": "kymriah", "infusion_date": day.isoformat(), "risk_flags": [_ch_flag()]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["protocol"] == "intensified v2"
    assert body["risk_flags"][0]["findings"] == [
        {"gene": "DNMT3A", "vaf_percent": 4.0},
        {"gene": "TET2", "vaf_percent": 2},
    ]
    assert body["variant_reasons"] == [{"code": "clonal_haematopoiesis", "label": "Clonal haematopoiesis (CH/CHIP)"}]
    flag = RiskFlag.objects.get(infusion_id=body["id"])
    assert (flag.source, flag.source_reference, flag.detail) == ("ngs_report", "NGS-2026-114", "DNMT3A 4%, TET2 2%")


def test_it_replans_when_a_flag_is_recorded_later(api_a, planned_a):
    _, infusion = planned_a
    response = api_a.post(f"/api/v1/infusions/{infusion.pk}/risk-flags", _ch_flag(reason="CH at M12"), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["changed"] == ["clonal_haematopoiesis"] and body["dry_run"] is False
    assert body["plan"]["protocol_to"] == "intensified v2" and body["plan"]["reasons"] == ["clonal_haematopoiesis"]
    assert body["plan"]["added"]
    infusion.refresh_from_db()
    assert str(infusion.protocol) == "intensified v2"
    replan = AuditEntry.objects.get(action="replan", object_id=str(infusion.pk))
    assert replan.changes["variant_reasons"] == ["clonal_haematopoiesis"] and replan.changes["reason"] == "CH at M12"
    assert AuditEntry.objects.filter(action="risk_flags", object_id=str(infusion.pk)).exists()
    assert VisitChange.objects.filter(visit__infusion=infusion, reason="CH at M12").exists()


def test_it_changes_nothing_when_the_same_flag_comes_again(api_a, planned_a):
    _, infusion = planned_a
    api_a.post(f"/api/v1/infusions/{infusion.pk}/risk-flags", _ch_flag(), format="json")
    visits = FollowUpVisit.objects.filter(infusion=infusion).count()
    again = api_a.post(f"/api/v1/infusions/{infusion.pk}/risk-flags", _ch_flag(), format="json")
    assert again.status_code == 200 and again.json() == {"dry_run": False, "changed": [], "plan": None}
    assert FollowUpVisit.objects.filter(infusion=infusion).count() == visits
    assert AuditEntry.objects.filter(action="risk_flags", object_id=str(infusion.pk)).count() == 1


def test_it_previews_the_replan_without_saving_on_a_dry_run(api_a, planned_a):
    _, infusion = planned_a
    visits = FollowUpVisit.objects.filter(infusion=infusion).count()
    response = api_a.post(f"/api/v1/infusions/{infusion.pk}/risk-flags?dry_run=1", _ch_flag(), format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"]["protocol_to"] == "intensified v2" and response.json()["dry_run"] is True
    assert not RiskFlag.objects.filter(infusion=infusion).exists()
    assert Infusion.objects.get(pk=infusion.pk).protocol_id == infusion.protocol_id
    assert FollowUpVisit.objects.filter(infusion=infusion).count() == visits
    assert not AuditEntry.objects.filter(action="risk_flags").exists()


def test_it_names_each_bad_field_of_a_flag(api_a, planned_a):
    _, infusion = planned_a
    response = api_a.post(
        f"/api/v1/infusions/{infusion.pk}/risk-flags",
        {"code": "bad_luck", "source": "rumour", "observed_on": "2999-01-01", "findings": [{"gene": "<script>"}]},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"code", "source", "observed_on", "findings"}
    assert not RiskFlag.objects.filter(infusion=infusion).exists()


def test_it_refuses_flags_in_an_infusion_update(api_a, planned_a):
    _, infusion = planned_a
    response = api_a.patch(f"/api/v1/infusions/{infusion.pk}", {"risk_flags": [_ch_flag()]}, format="json")
    assert response.status_code == 400
    assert "risk_flags" in response.json()["fields"]
    assert not RiskFlag.objects.filter(infusion=infusion).exists()


def test_it_does_not_let_another_centre_record_a_flag(api_b, planned_a):
    _, infusion = planned_a
    response = api_b.post(f"/api/v1/infusions/{infusion.pk}/risk-flags", _ch_flag(), format="json")
    missing = api_b.post("/api/v1/infusions/999999/risk-flags", _ch_flag(), format="json")
    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json()
    assert not RiskFlag.objects.filter(infusion=infusion).exists()


def test_it_keeps_the_flag_but_plans_nothing_after_a_death(api_a, planned_a):
    patient, infusion = planned_a
    api_a.post(
        f"/api/v1/patients/{patient.pk}/status",
        {"status": "deceased", "date": dt.date.today().isoformat(), "reason": "Death notice"},
        format="json",
    )
    response = api_a.post(f"/api/v1/infusions/{infusion.pk}/risk-flags", _ch_flag(), format="json")
    assert response.status_code == 200 and response.json()["plan"] is None
    assert RiskFlag.objects.filter(infusion=infusion).exists()
    assert not FollowUpVisit.objects.filter(infusion=infusion, status="scheduled").exists()
