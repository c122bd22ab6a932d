"""Risk flags from every entry (the admin, the API, the EHR imports), and the re-plan a new or changed one causes.

A flag is a risk factor for second cancers with where it came from and when (clinical-reference (b): "store risk
flags with their source and date ... and recompute the schedule when a flag changes"). Whoever records it, the
flag is written here and the infusion is re-planned through ``planning``'s diff, so the re-plan carries the
reasons for the variant and lands in the audit trail and the visits' history. A source that says again what is
stored already (an EHR export imported twice) changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from surveillance.access.audit import audit_write
from surveillance.care import planning
from surveillance.imports.fhir.records import RiskFlagRecord
from surveillance.models import Infusion, Patient, RiskFlag
from surveillance.models.patients import FlagSource


@dataclass(frozen=True)
class FlagFacts:
    """What one source says about one risk factor of an infusion."""

    code: str
    present: bool
    source: str
    observed_on: dt.date
    detail: str = ""
    #: None: the source says nothing about NGS findings (a clinician's form), so stored ones are kept.
    findings: tuple[dict, ...] | None = None
    source_reference: str = ""

    def values(self) -> dict:
        """The flag's stored columns (without infusion, code and who recorded it)."""
        values = {
            "present": self.present,
            "source": self.source,
            "observed_on": self.observed_on,
            "detail": self.detail[:255],
            "source_reference": self.source_reference[:255],
        }
        if self.findings is not None:
            values["findings"] = [dict(finding) for finding in self.findings]
        return values


def risk_flag_write(infusion: Infusion, facts: FlagFacts, *, by=None) -> bool:
    """Store what the source says about the flag; False (and nothing written) when it is what is stored."""
    stored = RiskFlag.objects.filter(infusion=infusion, code=facts.code).first()
    values = facts.values()
    if stored is not None and all(getattr(stored, name) == value for name, value in values.items()):
        return False
    RiskFlag.objects.update_or_create(infusion=infusion, code=facts.code, defaults={**values, "recorded_by": by})
    return True


@dataclass
class FlagsOutcome:
    """What recording flags did: which changed, and the re-plan (None when nothing changed or nothing is planned)."""

    changed: list[str]
    diff: planning.PlanDiff | None


def infusion_risk_flags_record(
    infusion: Infusion,
    flags: Iterable[FlagFacts],
    *,
    by=None,
    reason: str = "",
    dry_run: bool = False,
) -> FlagsOutcome:
    """Record flags of an infusion and re-plan it at once (an EHR or an interface says so: no one to confirm).

    The change is audited with the flags it changed; the re-plan writes its own audit entry and the visits'
    history, with the variant's reasons. A patient whose follow-up is closed keeps the flag but is not re-planned
    (no care after a recorded death), and neither is a superseded infusion. ``dry_run`` returns the diff the
    change would cause and writes nothing.
    """
    with transaction.atomic():
        changed = [facts for facts in flags if risk_flag_write(infusion, facts, by=by)]
        if not changed:
            return FlagsOutcome([], None)
        audit_write(
            "risk_flags",
            by=by,
            object_type="infusion",
            object_id=str(infusion.pk),
            patient_id=infusion.patient_id,
            changes={
                "flags": [
                    {"code": f.code, "present": f.present, "source": f.source, "observed_on": f.observed_on.isoformat()}
                    for f in changed
                ],
                "reason": reason,
            },
        )
        diff = None
        if infusion.patient.under_follow_up and not infusion.superseded_by_id:
            if dry_run:
                diff = planning.infusion_plan_preview(_reloaded(infusion))
            else:
                diff = planning.infusion_plan(infusion, by=by, reason=reason or "risk flags changed")
        if dry_run:
            transaction.set_rollback(True)
    return FlagsOutcome([facts.code for facts in changed], diff)


#: Where an EHR record's flag comes from, by the resource that carried it.
RECORD_SOURCES = {"Procedure": FlagSource.TREATMENT_HISTORY, "Condition": FlagSource.EHR_IMPORT}


def flag_facts_from_record(record: RiskFlagRecord) -> FlagFacts:
    """What an imported record says, as the flag's facts: the source names the kind of evidence (an NGS report, a
    lab result, treatment history), the reference names the resource it came from."""
    if record.resource_type == "Observation":
        source = FlagSource.NGS_REPORT if record.code == "clonal_haematopoiesis" else FlagSource.LAB_RESULT
    else:
        source = RECORD_SOURCES.get(record.resource_type, FlagSource.EHR_IMPORT)
    return FlagFacts(
        code=record.code,
        present=record.present,
        source=source,
        observed_on=record.observed_on,
        detail=record.detail,
        findings=tuple({"gene": gene, "vaf_percent": vaf} for gene, vaf in record.findings),
        source_reference=f"{record.resource_type}/{record.source_id}",
    )


def patient_risk_flags_import(
    patient: Patient, records: Iterable[RiskFlagRecord], *, by=None, reason: str = "EHR import"
) -> list[FlagsOutcome]:
    """Record flags an EHR sent about a patient on each of their infusions still followed (not superseded), and
    re-plan those at once. For the importer: call it once the batch's infusions are written, so that flags sent
    in the same export as the infusion reach it."""
    facts = [flag_facts_from_record(record) for record in records]
    infusions = Infusion.objects.filter(patient=patient, superseded_by__isnull=True).select_related(
        "patient__centre", "product", "protocol"
    )
    return [infusion_risk_flags_record(infusion, facts, by=by, reason=reason) for infusion in infusions]


def _reloaded(infusion: Infusion) -> Infusion:
    """The infusion as the planner reads it, with the flags just written."""
    return Infusion.objects.select_related("product", "patient__centre", "protocol").get(pk=infusion.pk)
