"""Flags an EHR sent about a patient: recorded on each followed infusion with their evidence, re-planned at once."""

from __future__ import annotations

import datetime as dt

from surveillance.care import planning
from surveillance.care.risk_flags import patient_risk_flags_import
from surveillance.imports.fhir.records import RiskFlagRecord
from surveillance.models import AuditEntry, RiskFlag


def _record(**fields) -> RiskFlagRecord:
    values = {
        "source_id": "var-1",
        "resource_type": "Observation",
        "patient_ref": "p1",
        "code": "clonal_haematopoiesis",
        "present": True,
        "observed_on": dt.date.today() - dt.timedelta(days=2),
        "matched_code": ("http://loinc.org", "69548-6"),
        "detail": "DNMT3A 4%",
        "findings": (("DNMT3A", 4.0),),
    }
    return RiskFlagRecord(**{**values, **fields})


def test_it_records_an_ngs_finding_and_replans_the_followed_infusion(centre_a, make_patient, make_infusion):
    patient = make_patient(centre_a, birth_date=dt.date(1980, 1, 1))
    infusion = make_infusion(patient, infusion_date=dt.date.today() - dt.timedelta(days=90))
    planning.infusion_plan(infusion)
    (outcome,) = patient_risk_flags_import(patient, [_record()])
    assert outcome.changed == ["clonal_haematopoiesis"] and outcome.diff.protocol_to == "intensified v2"
    flag = RiskFlag.objects.get(infusion=infusion)
    assert (flag.source, flag.source_reference, flag.findings) == (
        "ngs_report",
        "Observation/var-1",
        [{"gene": "DNMT3A", "vaf_percent": 4.0}],
    )
    assert AuditEntry.objects.filter(action="replan", object_id=str(infusion.pk), changes__reason="EHR import").exists()


def test_it_changes_nothing_when_the_same_export_comes_again(centre_a, make_patient, make_infusion):
    patient = make_patient(centre_a)
    infusion = make_infusion(patient, infusion_date=dt.date.today() - dt.timedelta(days=90))
    planning.infusion_plan(infusion)
    patient_risk_flags_import(patient, [_record(resource_type="Procedure", code="prior_auto_hct", findings=())])
    (again,) = patient_risk_flags_import(
        patient, [_record(resource_type="Procedure", code="prior_auto_hct", findings=())]
    )
    assert again.changed == [] and again.diff is None
    assert RiskFlag.objects.get(infusion=infusion).source == "treatment_history"
