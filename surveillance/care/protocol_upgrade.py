"""Moving a cohort to a new version of its surveillance protocol: preview first, then apply as confirmed.

A new version of a protocol family (same code, higher version) is compared with every infusion of the user's
centres still on an older version of that family: how many patients, and which visits would move, be added or be
removed. A physician applies exactly the previewed change (its fingerprint is checked) in one transaction; the
planner never touches completed or missed visits, and the upgrade leaves one audit row for the cohort besides the
planner's row per infusion. A draft version becomes active when first applied.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.care import planning
from surveillance.models import Infusion, Protocol, ProtocolStatus


@dataclass
class CohortUpgradePreview:
    protocol_id: int
    protocol: str
    diffs: list[planning.PlanDiff] = field(default_factory=list)
    patients: int = 0

    @property
    def infusions(self) -> int:
        return len(self.diffs)

    @property
    def added(self) -> int:
        return sum(len(d.added) for d in self.diffs)

    @property
    def moved(self) -> int:
        return sum(len(d.moved) for d in self.diffs)

    @property
    def removed(self) -> int:
        return sum(len(d.removed) for d in self.diffs)

    @property
    def changed(self) -> int:
        return sum(len(d.changed) for d in self.diffs)

    @property
    def patients_affected(self) -> int:
        """Infusions whose visits change (not only the protocol they point to)."""
        return sum(1 for d in self.diffs if d.added or d.moved or d.removed or d.changed)

    def from_versions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.diffs:
            counts[d.protocol_from or "none"] = counts.get(d.protocol_from or "none", 0) + 1
        return counts

    def fingerprint(self) -> str:
        payload = "|".join(
            f"{d.infusion_id}:{d.fingerprint()}" for d in sorted(self.diffs, key=lambda d: d.infusion_id)
        )
        return hashlib.sha256(f"{self.protocol_id}|{payload}".encode()).hexdigest()[:16]

    def summary(self) -> str:
        return (
            f"{self.patients} patients ({self.infusions} infusions): {self.added} visits added, {self.moved} moved, "
            f"{self.removed} removed, {self.changed} changed"
        )


def protocol_upgrade_targets() -> QuerySet:
    """Versions that some infusion could be upgraded to: active or draft, not retired."""
    return Protocol.objects.exclude(status=ProtocolStatus.RETIRED).order_by("code", "-version")


def protocol_upgrade_candidates(protocol: Protocol, centre_ids: list[int] | None) -> QuerySet:
    """Infusions of the centres on an older version of the same protocol family, not superseded."""
    infusions = Infusion.objects.filter(
        protocol__code=protocol.code, protocol__version__lt=protocol.version, superseded_by__isnull=True
    )
    if centre_ids is not None:
        infusions = infusions.filter(patient__centre_id__in=centre_ids)
    return infusions


def protocol_upgrade_preview(protocol: Protocol, centre_ids: list[int] | None) -> CohortUpgradePreview:
    """What moving the centres' cohort to ``protocol`` would change; reads in a fixed number of queries."""
    infusions = (
        protocol_upgrade_candidates(protocol, centre_ids)
        .select_related("product", "patient__centre", "protocol")
        .prefetch_related("risk_flags", "condition_decisions", "visits")
        .order_by("pk")
    )
    preview = CohortUpgradePreview(protocol_id=protocol.pk, protocol=str(protocol))
    patients = set()
    for infusion in infusions:
        preview.diffs.append(planning.infusion_plan_preview(infusion, protocol=protocol))
        patients.add(infusion.patient_id)
    preview.patients = len(patients)
    return preview


def protocol_upgrade_apply(
    protocol: Protocol,
    *,
    by,
    centre_ids: list[int] | None,
    confirm: str,
    remote_addr: str | None = None,
    now: dt.datetime | None = None,
) -> CohortUpgradePreview:
    """Apply the previewed upgrade; ``planning.PlanChanged`` (nothing written) if the cohort moved since."""
    now = now or timezone.now()
    with transaction.atomic():
        preview = protocol_upgrade_preview(protocol, centre_ids)
        if preview.fingerprint() != confirm:
            raise planning.PlanChanged(preview.summary())
        if protocol.status == ProtocolStatus.DRAFT:
            Protocol.objects.filter(pk=protocol.pk, status=ProtocolStatus.DRAFT).update(
                status=ProtocolStatus.ACTIVE, activated_at=now, activated_by=by
            )
            protocol.refresh_from_db()
        reason = f"protocol upgrade to {protocol}"
        for diff in preview.diffs:
            infusion = Infusion(pk=diff.infusion_id)
            planning.infusion_plan(
                infusion, protocol=protocol, by=by, reason=reason, confirm=diff.fingerprint(), now=now
            )
        audit_write(
            "protocol_upgrade",
            by=by,
            object_type="protocol",
            object_id=protocol.pk,
            remote_addr=remote_addr,
            changes={
                "protocol": str(protocol),
                "summary": preview.summary(),
                "from": preview.from_versions(),
                "centres": centre_ids,
                "infusion_ids": [d.infusion_id for d in preview.diffs],
            },
        )
    return preview
