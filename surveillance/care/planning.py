"""Apply a schedule plan to the database: first plan, re-plan with a diff preview, protocol upgrades.

The engine (``scheduling``) says what the visits should be; this module compares that with what is stored and
writes the difference. Completed and missed visits are history and are never touched; a visit a person cancelled
stays cancelled. A visit whose window closed before it was planned (an infusion entered after the fact) is
``unrecorded``, not missed: it moves with a corrected infusion date like a scheduled one, and becomes scheduled
again should its window now lie ahead (and the other way round). A re-plan is idempotent: running it twice
changes nothing the second time. Callers show ``infusion_plan_preview()`` to a person, then pass its fingerprint
to ``infusion_plan()`` so that the change applied is the change that was confirmed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_entries_insert, audit_entry_build
from surveillance.care import reasons
from surveillance.db import bulk_rows
from surveillance.models import (
    AuditEntry,
    CarTProduct,
    ConditionDecision,
    FollowUpVisit,
    Infusion,
    Protocol,
    ProtocolRule,
    RiskFlag,
    TreatmentCentre,
    VisitChange,
    VisitStatus,
)
from surveillance.models.patients import RiskFlagCode
from surveillance.models.visits import (
    PLAN_CONTENT_FIELDS,
    PLAN_DATE_FIELDS,
    PLAN_FIELDS,
    RECORDABLE_STATUSES,
    SETTLED_STATUSES,
)
from surveillance.reminders import outbox
from surveillance.scheduling import clinic_calendar, engine

WINDOW_CLOSED_REASON = reasons.WINDOW_CLOSED
SUPERSEDED_REASON = reasons.SUPERSEDED


class PlanChanged(Exception):
    """The plan differs from the preview a person confirmed; show the new preview instead of applying."""


@dataclass(frozen=True)
class VisitMove:
    visit_id: int
    rule_code: str
    occurrence: int
    old_due: dt.date
    new_due: dt.date
    new_window_start: dt.date
    new_window_end: dt.date


@dataclass(frozen=True)
class VisitRef:
    visit_id: int | None
    rule_code: str
    occurrence: int
    due_date: dt.date


@dataclass
class PlanDiff:
    """What applying a plan would do (or did): for a person to read before confirming."""

    infusion_id: int
    protocol_from: str | None
    protocol_to: str | None
    added: list[VisitRef] = field(default_factory=list)
    moved: list[VisitMove] = field(default_factory=list)
    removed: list[VisitRef] = field(default_factory=list)
    changed: list[VisitRef] = field(default_factory=list)
    unchanged: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.moved or self.removed or self.changed) and self.protocol_from == self.protocol_to

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))

    def fingerprint(self) -> str:
        """A short hash of the change itself, so a confirmation can be checked against what is applied."""
        payload = self.as_dict()
        payload.pop("unchanged")
        for ref in payload["added"]:
            ref.pop("visit_id")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.moved)} moved, {len(self.removed)} removed, "
            f"{len(self.changed)} changed, {self.unchanged} unchanged"
        )


@lru_cache(maxsize=64)
def _protocol_spec(protocol_id: int, content_hash: str) -> engine.ProtocolSpec:
    return Protocol.objects.prefetch_related("rules").get(pk=protocol_id).to_spec()


def protocol_spec(protocol: Protocol) -> engine.ProtocolSpec:
    """The engine's view of a protocol, parsed once per version (active versions never change)."""
    return _protocol_spec(protocol.pk, protocol.content_hash)


def infusion_facts(infusion: Infusion) -> engine.InfusionFacts:
    """What the engine needs to know about an infusion, read from the database."""
    return _facts(infusion, infusion.risk_flags.all(), infusion.condition_decisions.all())


def _facts(
    infusion: Infusion, risk_flags: Iterable[RiskFlag], decisions: Iterable[ConditionDecision]
) -> engine.InfusionFacts:
    """``infusion_facts`` from the infusion's risk flags and condition decisions as given: a caller planning many
    infusions reads those of all of them at once."""
    flags = frozenset(flag.code for flag in risk_flags if flag.present)
    conditions = {d.condition: engine.ConditionState(active=d.active, until=d.until) for d in decisions}
    return engine.InfusionFacts(
        infusion_date=infusion.infusion_date,
        # No product yet (to confirm): no target or vector, which the engine plans on the intensified variant.
        target_antigen=infusion.product.target_antigen if infusion.product else "",
        vector_type=infusion.product.vector_type if infusion.product else "",
        birth_date=infusion.patient.birth_date,
        risk_flags=flags,
        prior_lines=infusion.prior_lines,
        conditions=conditions,
    )


def infusion_variant_reasons(infusion: Infusion) -> list[tuple[str, str]]:
    """Why the infusion calls for the intensified variant, as (code, label) pairs; empty means standard."""
    return [
        (code, RiskFlagCode(code).label if code in RiskFlagCode.values else engine.REASON_LABELS.get(code, code))
        for code in engine.intensified_reasons(infusion_facts(infusion))
    ]


def infusion_choose_protocol(facts: engine.InfusionFacts) -> Protocol:
    """The newest active version of the variant the risk flags call for."""
    return Protocol.objects.current(engine.choose_variant(facts))


def _planned(infusion: Infusion, protocol: Protocol, facts: engine.InfusionFacts) -> list[engine.PlannedVisit]:
    """The engine's visits, each due on a day the patient's clinic is open (``clinic_calendar``)."""
    if infusion.superseded_by_id:
        return []
    visits = engine.plan_visits(protocol_spec(protocol), facts, settings.CARTWATCH["HORIZON_YEARS"])
    return clinic_calendar.visits_on_open_days(visits, infusion.patient.centre.calendar())


def _diff(
    infusion: Infusion,
    protocol: Protocol,
    planned: list[engine.PlannedVisit],
    facts: engine.InfusionFacts,
    *,
    date_corrected: bool = False,
    stored_visits: Iterable[FollowUpVisit] | None = None,
) -> tuple[PlanDiff, dict]:
    """Compare the plan with stored visits (``stored_visits``, else the infusion's). Returns the diff and the work
    needed to apply it.

    Completed visits are history. Missed ones are too, except after a corrected infusion date: a visit missed on a
    wrong date was not missed, so it moves with the others (scheduled, or unrecorded if its new window has closed).
    """
    visits = infusion.visits.all() if stored_visits is None else stored_visits
    stored = {(v.rule_code, v.occurrence): v for v in visits}
    diff = PlanDiff(
        infusion_id=infusion.pk,
        protocol_from=str(infusion.protocol) if infusion.protocol_id else None,
        protocol_to=str(protocol),
        reasons=engine.intensified_reasons(facts),
    )
    work: dict[str, list] = {"create": [], "revive": [], "move": [], "change": [], "remove": [], "relink": []}
    wanted = {(p.rule_code, p.occurrence): p for p in planned}
    for key, plan in wanted.items():
        visit = stored.get(key)
        if visit is None:
            diff.added.append(VisitRef(None, plan.rule_code, plan.occurrence, plan.due_date))
            work["create"].append(plan)
        elif (visit.status in SETTLED_STATUSES and not (date_corrected and visit.status == VisitStatus.MISSED)) or (
            visit.status == VisitStatus.CANCELLED and not visit.planner_cancelled
        ):
            diff.unchanged += 1
        elif visit.status == VisitStatus.CANCELLED:
            diff.added.append(VisitRef(visit.pk, plan.rule_code, plan.occurrence, plan.due_date))
            work["revive"].append((visit, plan))
        elif _plan_values(visit, PLAN_DATE_FIELDS) != _plan_values(plan, PLAN_DATE_FIELDS):
            diff.moved.append(
                VisitMove(
                    visit.pk,
                    plan.rule_code,
                    plan.occurrence,
                    visit.due_date,
                    plan.due_date,
                    plan.window_start,
                    plan.window_end,
                )
            )
            work["move"].append((visit, plan))
        elif _plan_values(visit, PLAN_CONTENT_FIELDS) != _plan_values(plan, PLAN_CONTENT_FIELDS):
            diff.changed.append(VisitRef(visit.pk, plan.rule_code, plan.occurrence, plan.due_date))
            work["change"].append((visit, plan))
        else:
            diff.unchanged += 1
            work["relink"].append((visit, plan))
    for key, visit in stored.items():
        if key not in wanted and visit.status in RECORDABLE_STATUSES:
            diff.removed.append(VisitRef(visit.pk, visit.rule_code, visit.occurrence, visit.due_date))
            work["remove"].append(visit)
    return diff, work


def infusion_plan_preview(
    infusion: Infusion, *, protocol: Protocol | None = None, date_corrected: bool = False
) -> PlanDiff:
    """What re-planning would change, without writing anything (``date_corrected``: as ``infusion_plan``)."""
    facts = infusion_facts(infusion)
    protocol = protocol or infusion_choose_protocol(facts)
    diff, _ = _diff(infusion, protocol, _planned(infusion, protocol, facts), facts, date_corrected=date_corrected)
    return diff


def infusion_plan(
    infusion: Infusion,
    *,
    protocol: Protocol | None = None,
    by=None,
    reason: str = "",
    confirm: str | None = None,
    date_corrected: bool = False,
    now: dt.datetime | None = None,
) -> PlanDiff:
    """Plan or re-plan an infusion's visits and their reminders, atomically; returns what changed.

    ``confirm``, when given, is the fingerprint of the preview a person saw: if the plan has changed since,
    ``PlanChanged`` is raised and nothing is written. ``date_corrected``: the infusion date was just corrected, so
    missed visits move too (``_diff``).
    """
    now = now or timezone.now()
    given = infusion
    with transaction.atomic():
        # Serialise concurrent re-plans of the same infusion (a no-op on SQLite, whose writes are serial anyway).
        infusion = (
            Infusion.objects.select_for_update(of=("self",))
            .select_related("product", "patient__centre", "protocol")
            .get(pk=infusion.pk)
        )
        facts = infusion_facts(infusion)
        protocol = protocol or infusion_choose_protocol(facts)
        diff, work = _diff(
            infusion, protocol, _planned(infusion, protocol, facts), facts, date_corrected=date_corrected
        )
        if confirm is not None and confirm != diff.fingerprint():
            raise PlanChanged(diff.summary())
        # The caller's instance (an API answer renders it) shows the protocol planned, not the one it was read with.
        given.protocol = protocol
        if diff.is_empty:
            return diff
        if _is_first_plan(infusion, work):
            _first_plans_write([(infusion, protocol, diff, work["create"])], by=by, reason=reason, now=now)
            return diff
        _apply(infusion, protocol, work, by=by, reason=reason, now=now)
        _plan_audit(infusion, diff, by=by, reason=reason).save()
    return diff


def infusions_plan_new(
    infusions: list[Infusion], *, by=None, reason: str = "", now: dt.datetime | None = None
) -> list[PlanDiff]:
    """Plan many infusions at once (a batch of an import); returns their diffs, in the order given.

    An infusion with no protocol and no visits yet (the common case: one just created) is planned in bulk: its
    visits, their reminders and its audit entry are written with a few statements for the whole batch instead of a
    few per infusion. The rows are those ``infusion_plan()`` would write one by one. Any other infusion is planned
    by ``infusion_plan()``, after the new ones.
    """
    now = now or timezone.now()
    if not infusions:
        return []
    with transaction.atomic():
        pks = [infusion.pk for infusion in infusions]
        locked = {
            infusion.pk: infusion
            for infusion in Infusion.objects.select_for_update(of=("self",))
            .select_related("patient")
            .filter(pk__in=pks)
        }
        _centres_and_products_attach(list(locked.values()))
        # Read for all at once, not prefetched: a prefetch builds a related manager and a queryset per infusion.
        with_visits = set(
            FollowUpVisit.objects.filter(infusion_id__in=pks).values_list("infusion_id", flat=True).distinct()
        )
        flags = _by_infusion(RiskFlag.objects.filter(infusion_id__in=pks))
        decisions = _by_infusion(ConditionDecision.objects.filter(infusion_id__in=pks))
        protocols: dict[str, Protocol] = {}
        diffs: dict[int, PlanDiff] = {}
        first: list[tuple[Infusion, Protocol, PlanDiff, list[engine.PlannedVisit]]] = []
        for infusion in infusions:
            infusion = locked[infusion.pk]
            if infusion.pk in diffs or infusion.protocol_id is not None or infusion.pk in with_visits:
                continue
            facts = _facts(infusion, flags.get(infusion.pk, ()), decisions.get(infusion.pk, ()))
            variant = engine.choose_variant(facts)
            if variant not in protocols:
                protocols[variant] = Protocol.objects.current(variant)
            protocol = protocols[variant]
            diff, work = _diff(infusion, protocol, _planned(infusion, protocol, facts), facts, stored_visits=())
            diffs[infusion.pk] = diff
            if not diff.is_empty:
                first.append((infusion, protocol, diff, work["create"]))
        _first_plans_write(first, by=by, reason=reason, now=now)
        for infusion in infusions:
            if infusion.pk not in diffs:
                diffs[infusion.pk] = infusion_plan(infusion, by=by, reason=reason, now=now)
    return [diffs[infusion.pk] for infusion in infusions]


def _centres_and_products_attach(infusions: list[Infusion]) -> None:
    """Give the infusions their patients' centres and their products, each read once for the batch: one object per
    centre and per product rather than one joined into every row, so that a centre's clinic calendar (its closures
    come through the cache) is built once per batch, not once per infusion."""
    centres = TreatmentCentre.objects.in_bulk({infusion.patient.centre_id for infusion in infusions})
    products = CarTProduct.objects.in_bulk({infusion.product_id for infusion in infusions if infusion.product_id})
    for infusion in infusions:
        infusion.patient.centre = centres[infusion.patient.centre_id]
        infusion.product = products.get(infusion.product_id)


def _by_infusion(rows: Iterable[RiskFlag | ConditionDecision]) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(row.infusion_id, []).append(row)
    return grouped


def _is_first_plan(infusion: Infusion, work: dict) -> bool:
    """No protocol assigned and no visits stored: a plan that only creates (``_first_plans_write``)."""
    return infusion.protocol_id is None and not any(work[key] for key in work if key != "create")


def _first_plans_write(
    plans: list[tuple[Infusion, Protocol, PlanDiff, list[engine.PlannedVisit]]],
    *,
    by,
    reason: str,
    now: dt.datetime,
) -> None:
    """Write the first plans of infusions that have no visits yet, in bulk: what ``_apply`` and the audit entry of
    ``infusion_plan()`` write for them, a statement or two per table (and per protocol) instead of per infusion.

    Visits are written as rows (``bulk_rows``), not model instances: only those in the reminder look-ahead, a few
    per infusion, are built as visits (and numbered beforehand), for the outbox to plan their reminders."""
    if not plans:
        return
    rules: dict[int, dict[str, ProtocolRule]] = {}
    assigned: dict[int, list[int]] = {}
    rows: list[tuple] = []
    lookahead: list[FollowUpVisit] = []
    lookahead_rows: list[tuple] = []
    closed, ahead = _visit_status(closed_at=now), _visit_status()
    days: dict[int, tuple[dt.date, dt.date]] = {}  # centre pk -> its today and the end of its reminder look-ahead
    for infusion, protocol, _, planned in plans:
        if protocol.pk not in rules:
            rules[protocol.pk] = {rule.code: rule for rule in ProtocolRule.objects.filter(protocol=protocol)}
        if infusion.protocol_id != protocol.pk:
            infusion.protocol = protocol
            assigned.setdefault(protocol.pk, []).append(infusion.pk)
        centre = infusion.patient.centre
        if centre.pk not in days:
            today = timezone.localdate(now, centre.tz)
            days[centre.pk] = (today, outbox.lookahead_end(today))
        today, horizon = days[centre.pk]
        by_code, infusion_id = rules[protocol.pk], infusion.pk
        for plan in planned:
            rule = by_code[plan.rule_code]
            if plan.window_end < today:
                rows.append(_visit_row(infusion_id, rule.id, plan, closed))
                continue
            if plan.due_date <= horizon:  # a new visit has no outbox rows yet: only one in the look-ahead needs any
                visit = _new_visit(infusion, rule, plan, today, now)
                visit.reminders_planned_for = visit.sequence
                lookahead.append(visit)
                lookahead_rows.append(
                    _visit_row(infusion_id, rule.id, plan, _visit_status(reminders_planned_for=visit.sequence))
                )
            else:
                rows.append(_visit_row(infusion_id, rule.id, plan, ahead))
    for protocol_id, pks in assigned.items():
        Infusion.objects.filter(pk__in=pks).update(protocol=protocol_id, updated_at=now)
    bulk_rows.rows_insert(FollowUpVisit, VISIT_ROW_COLUMNS, rows)
    ids = bulk_rows.rows_insert_numbered(FollowUpVisit, VISIT_ROW_COLUMNS, lookahead_rows)
    for visit, pk in zip(lookahead, ids, strict=True):
        visit.pk = pk
    outbox.new_visits_reminders_plan(lookahead, now)
    audit_entries_insert(_plan_audit(infusion, diff, by=by, reason=reason) for infusion, _, diff, _ in plans)


VISIT_ROW_COLUMNS = (
    "infusion_id",
    "rule_id",
    "rule_code",
    "occurrence",
    *PLAN_FIELDS,
    "status",
    "status_reason",
    "status_changed_at",
    "reminders_planned_for",
)


_PLAN_VALUES = operator.attrgetter(*PLAN_FIELDS)


def _visit_row(infusion_id: int, rule_id: int, plan: engine.PlannedVisit, status: tuple) -> tuple:
    """A new visit's row (``VISIT_ROW_COLUMNS``), as ``_new_visit`` fills it; ``status``: its last four columns
    (``_visit_status``)."""
    return (infusion_id, rule_id, plan.rule_code, plan.occurrence, *_PLAN_VALUES(plan), *status)


def _visit_status(*, closed_at: dt.datetime | None = None, reminders_planned_for: int | None = None) -> tuple:
    """A new visit's status, status_reason, status_changed_at and reminders_planned_for; ``closed_at``: its window
    had closed when it was planned (an import of an old infusion), so it is unrecorded, not missed."""
    if closed_at is None:
        return (VisitStatus.SCHEDULED, "", None, reminders_planned_for)
    return (VisitStatus.UNRECORDED, WINDOW_CLOSED_REASON, closed_at, reminders_planned_for)


def _plan_audit(infusion: Infusion, diff: PlanDiff, *, by, reason: str) -> AuditEntry:
    """The audit entry of a plan or re-plan, unsaved (``save()``, or a row for ``audit_entries_insert``)."""
    return audit_entry_build(
        "plan" if diff.protocol_from is None else "replan",
        by=by,
        object_type="infusion",
        object_id=infusion.pk,
        patient_id=infusion.patient_id,
        changes={
            "summary": diff.summary(),
            "protocol": [diff.protocol_from, diff.protocol_to],
            "reason": reason,
            "variant_reasons": list(diff.reasons),
        },
    )


def _apply(infusion: Infusion, protocol: Protocol, work: dict, *, by, reason: str, now: dt.datetime) -> None:
    today = timezone.localdate(now, infusion.patient.centre.tz)
    rules = {rule.code: rule for rule in ProtocolRule.objects.filter(protocol=protocol)}
    if infusion.protocol_id != protocol.pk:
        infusion.protocol = protocol
        Infusion.objects.filter(pk=infusion.pk).update(protocol=protocol, updated_at=now)
    superseded = bool(infusion.superseded_by_id)

    created = FollowUpVisit.objects.bulk_create(
        [_new_visit(infusion, rules[p.rule_code], p, today, now) for p in work["create"]]
    )
    changes: list[VisitChange] = []
    touched: list[FollowUpVisit] = []
    for visit, plan in work["revive"]:
        before = _snapshot(visit)
        _copy_plan(visit, rules[plan.rule_code], plan)
        visit.planner_cancelled = False
        _open_status_set(visit, today, now, by)
        visit.sequence += 1
        changes.append(
            VisitChange(visit=visit, by=by, action="restored", before=before, after=_snapshot(visit), reason=reason)
        )
        touched.append(visit)
    for visit, plan in work["move"]:
        before = _snapshot(visit)
        _copy_plan(visit, rules[plan.rule_code], plan)
        _open_status_set(visit, today, now, by)
        visit.sequence += 1
        changes.append(
            VisitChange(visit=visit, by=by, action="moved", before=before, after=_snapshot(visit), reason=reason)
        )
        touched.append(visit)
    for visit, plan in work["change"]:
        before = _snapshot(visit)
        _copy_plan(visit, rules[plan.rule_code], plan)
        changes.append(
            VisitChange(visit=visit, by=by, action="changed", before=before, after=_snapshot(visit), reason=reason)
        )
        touched.append(visit)
    for visit, plan in work["relink"]:
        visit.rule = rules[plan.rule_code]
    for visit in work["remove"]:
        before = _snapshot(visit)
        visit.status = VisitStatus.CANCELLED
        visit.status_reason = SUPERSEDED_REASON if superseded else reasons.replan_removed_reason(reason)[:255]
        visit.planner_cancelled = not superseded
        visit.status_changed_at, visit.status_changed_by = now, by
        changes.append(
            VisitChange(visit=visit, by=by, action="removed", before=before, after=_snapshot(visit), reason=reason)
        )
        touched.append(visit)
    for visit in touched:
        visit.reminders_planned_for = None
    fields = [
        "rule",
        *PLAN_FIELDS,
        "status",
        "status_reason",
        "planner_cancelled",
        "status_changed_at",
        "status_changed_by",
        "sequence",
        "reminders_planned_for",
        "updated_at",
    ]
    for visit in touched:
        visit.updated_at = now
    FollowUpVisit.objects.bulk_update(touched, fields, batch_size=500)
    relinked = [visit for visit, _ in work["relink"]]
    FollowUpVisit.objects.bulk_update(relinked, ["rule"], batch_size=500)
    VisitChange.objects.bulk_create(changes)

    for visit in created:
        # A new visit has no outbox rows yet: only one in the look-ahead needs any (one planned already closed,
        # its window past, has nothing to plan or cancel).
        visit.infusion = infusion
        if outbox.in_lookahead(visit, today):
            outbox.visit_reminders_sync(visit, now)
    for visit in touched:
        visit.infusion = infusion
        if outbox.in_lookahead(visit, today) or visit.status != VisitStatus.SCHEDULED:
            outbox.visit_reminders_sync(visit, now)


def _new_visit(
    infusion: Infusion, rule: ProtocolRule, plan: engine.PlannedVisit, today: dt.date, now: dt.datetime
) -> FollowUpVisit:
    visit = FollowUpVisit(infusion=infusion, rule_code=plan.rule_code, occurrence=plan.occurrence)
    _copy_plan(visit, rule, plan)
    _open_status_set(visit, today, now, None)
    return visit


def _open_status_set(visit: FollowUpVisit, today: dt.date, now: dt.datetime, by) -> None:
    """Scheduled, or unrecorded if its window has already closed: planned after the fact (an infusion entered
    late, or a corrected date), it is not a missed visit but one whose outcome is still to be recorded."""
    status, reason = (
        (VisitStatus.UNRECORDED, WINDOW_CLOSED_REASON) if visit.window_end < today else (VisitStatus.SCHEDULED, "")
    )
    if (visit.status, visit.status_reason) != (status, reason):
        visit.status, visit.status_reason = status, reason
        visit.status_changed_at, visit.status_changed_by = now, by


def _copy_plan(visit: FollowUpVisit, rule: ProtocolRule, plan: engine.PlannedVisit) -> None:
    visit.rule = rule
    for name, value in zip(PLAN_FIELDS, _plan_values(plan, PLAN_FIELDS), strict=True):
        setattr(visit, name, value)


def _plan_values(source: FollowUpVisit | engine.PlannedVisit, names: tuple[str, ...]) -> tuple:
    """The named plan fields of a visit or a planned visit, comparable between the two (the engine's assessment
    codes are a tuple, a stored visit's a list)."""
    values = [getattr(source, name) for name in names]
    return tuple(list(value) if name == "assessments" else value for name, value in zip(names, values, strict=True))


def _snapshot(visit: FollowUpVisit) -> dict:
    return {
        "status": visit.status,
        "due_date": visit.due_date.isoformat(),
        "window": [visit.window_start.isoformat(), visit.window_end.isoformat()],
        "sequence": visit.sequence,
    }


def infusion_supersede_earlier(infusion: Infusion, *, by=None) -> list[Infusion]:
    """A re-infusion restarts the schedule: earlier open infusions of the patient stop and are re-planned empty."""
    earlier = list(
        Infusion.objects.filter(
            patient_id=infusion.patient_id,
            infusion_date__lt=infusion.infusion_date,
            superseded_by__isnull=True,
        ).exclude(pk=infusion.pk)
    )
    for old in earlier:
        Infusion.objects.filter(pk=old.pk, superseded_by__isnull=True).update(superseded_by=infusion)
        old.superseded_by = infusion
        infusion_plan(old, protocol=old.protocol, by=by, reason="re-infusion")
    return earlier
