"""The schedule engine: protocol + infusion facts -> planned follow-up visits.

Pure on purpose: no Django, no database, no clock. The planner (``care.planning``) compares what this module
says the visits should be with what is stored, so the rules can be tested exhaustively (property tests)
without a database, and the same plan comes out every time for the same inputs, which is what makes
re-planning idempotent.

Conventions (clinical-reference.md section (a)):

- Day 0 is the infusion date. Every occurrence is computed from the infusion date directly
  (``infusion + relativedelta(months=n)``), never chained from the previous occurrence: chaining would let a
  31 Jan infusion drift to the 28th for good after February, while anchoring gives 28/29 Feb then 31 Mar.
  A 29 Feb infusion's anniversaries fall on 28 Feb in common years (``relativedelta`` clamps to month end).
- Month and year offsets are calendar offsets: annual visits fall on the calendar anniversary of the infusion,
  as CIBMTR keys its forms to the "infusion anniversary".
- A window is ``due - before`` to ``due + after`` days, both ends inclusive.
- Nothing is planned past ``infusion + horizon_years``: lifelong rules stop there (the planner extends the
  horizon by re-planning, and occurrence numbers do not depend on the horizon, so extending it only adds
  visits).

The specs this module plans from are built by ``protocol_file`` (the seed-file format's parser and validator),
from the seed files and from the stored protocols alike.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property, lru_cache
from types import MappingProxyType

from dateutil.relativedelta import relativedelta

__all__ = [
    "AGE_THRESHOLD",
    "KIND_WITHOUT_REMINDERS",
    "NO_REMINDERS",
    "PRIOR_LINES_THRESHOLD",
    "REASON_LABELS",
    "RISK_FLAGS",
    "AssessmentSpec",
    "ConditionState",
    "InfusionFacts",
    "LabelledEnum",
    "OffsetUnit",
    "PlannedVisit",
    "ProtocolSpec",
    "ReminderCadence",
    "RuleSpec",
    "VisitKind",
    "age_on",
    "choose_variant",
    "intensified_reasons",
    "occurrence_offsets",
    "plan_visits",
    "rule_applies",
]


class LabelledEnum(StrEnum):
    """A string enum whose members also carry the label people read, written beside the value.

    The models derive their choices from these enums (``models.protocols``), so a value and its label are
    written once, here, and the engine stays free of Django.
    """

    label: str

    def __new__(cls, value: str, label: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.label = label
        return member


class OffsetUnit(LabelledEnum):
    """The unit of a rule's offset and repetition. Months and years are calendar units (``relativedelta``)."""

    DAY = "day", "Days"
    MONTH = "month", "Months"
    YEAR = "year", "Years"


class VisitKind(LabelledEnum):
    """What sort of contact a rule produces; the admin and the reminder texts differ by kind."""

    BASELINE = "baseline", "Baseline"
    INFUSION = "infusion", "Infusion"
    ACUTE = "acute", "Acute monitoring"
    CLINIC = "clinic", "Clinic visit"
    ANNUAL = "annual", "Annual examination"
    REMOTE = "remote", "Annual contact (questionnaire + CBC)"
    LAB = "lab", "Laboratory check"


#: No CAR-T product was infused before this day outside early trials: an earlier infusion date is a data error.
EARLIEST_INFUSION = dt.date(2010, 1, 1)

VARIANTS = ("standard", "intensified")

# Risk flags recorded on an infusion that each call for the intensified variant.
# clinical-reference (b) "Triggers": CH/CHIP, prior auto-HCT, heavy alkylator exposure, prior TBI/radiation,
# late/prolonged cytopenia or CCUS, EBV-positive lymphoma or EBV reactivation. The threshold choices are [I].
RISK_FLAGS: frozenset[str] = frozenset(
    {
        "clonal_haematopoiesis",
        "prior_auto_hct",
        "alkylator_exposure",
        "radiation_exposure",
        "prolonged_cytopenia",
        "ebv_positive",
    }
)

# Derived triggers, clinical-reference (b): ">=3 prior lines" (Tix meta-analysis; CIBMTR auto-HCT cohort:
# HR 1.9 for >=3 prior chemotherapy lines [C]) and "age >= 65" (cut-off [I]; age is associated with second
# cancers, MSK cohort [C]).
# A BCMA-directed product is a trigger too (Carvykti boxed warning names MDS/AML [C]).
PRIOR_LINES_THRESHOLD = 3
AGE_THRESHOLD = 65
REASON_PRIOR_LINES = f"prior_lines_ge_{PRIOR_LINES_THRESHOLD}"
REASON_AGE = f"age_ge_{AGE_THRESHOLD}"
REASON_BCMA = "target_bcma"
#: How the derived triggers read to a person (recorded flags read as their own labels).
REASON_LABELS = {
    REASON_PRIOR_LINES: f"{PRIOR_LINES_THRESHOLD} or more prior lines of therapy",
    REASON_AGE: f"Aged {AGE_THRESHOLD} or over at infusion",
    REASON_BCMA: "BCMA-directed product",
}
#: An infusion recorded without its product (a bare CAR-T administration code): see ``intensified_reasons``.
REASON_PRODUCT_UNKNOWN = "product_to_confirm"

# Keys a rule's ``applies_to`` may filter on, and those an assessment's ``when`` may (``offset`` selects
# occurrences by their offset amount in the rule's unit, e.g. the CH panel at month 24 of a quarterly rule).
APPLIES_TO_KEYS = frozenset({"target", "vector", "flags"})
WHEN_KEYS = APPLIES_TO_KEYS | {"offset"}


@dataclass(frozen=True)
class ReminderCadence:
    """When reminders go out for a visit of a rule.

    ``patient_days_before``: patient reminders this many days before the due date.
    ``care_team_window_open``: tell the care team when the window opens. ``escalate_overdue``: escalate when
    the window closes without a visit.
    """

    patient_days_before: tuple[int, ...] = (14, 2)
    care_team_window_open: bool = True
    escalate_overdue: bool = True


# Acute, infusion and baseline contacts happen while the patient is under the treating team's daily care:
# a reminder would be noise, and "overdue" has no meaning for a day-3 vitals check.
NO_REMINDERS = ReminderCadence(patient_days_before=(), care_team_window_open=False, escalate_overdue=False)
KIND_WITHOUT_REMINDERS = frozenset({VisitKind.BASELINE, VisitKind.INFUSION, VisitKind.ACUTE})


def _frozen_filter(value: Mapping[str, Iterable[str]] | None) -> Mapping[str, tuple[str, ...]]:
    """A read-only copy of a filter mapping, so a frozen spec cannot be changed through a shared dict."""
    return MappingProxyType({str(k): tuple(str(v) for v in vs) for k, vs in (value or {}).items()})


def _empty_filter() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class AssessmentSpec:
    """One item a visit asks for; ``when`` narrows it to some patients (target, vector, flags) or offsets."""

    code: str
    label: str
    when: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_filter, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", _frozen_filter(self.when))


@dataclass(frozen=True)
class RuleSpec:
    """One protocol line: when its visits fall, with what window, asking for what, for whom.

    ``repeat_until`` is the last offset amount (inclusive, same unit as the offset); ``lifelong`` repeats up
    to the planning horizon instead. Both are unset for a single visit.
    """

    code: str
    label: str
    kind: str
    offset_amount: int
    offset_unit: OffsetUnit
    repeat_every: int | None
    repeat_until: int | None
    lifelong: bool
    window_before: int
    window_after: int
    assessments: tuple[AssessmentSpec, ...] = ()
    applies_to: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_filter, hash=False)
    condition: str | None = None
    reminders: ReminderCadence = field(default_factory=ReminderCadence)
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "applies_to", _frozen_filter(self.applies_to))
        object.__setattr__(self, "assessments", tuple(self.assessments))


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol version as the engine sees it, with ``extends`` already resolved into ``rules``."""

    code: str
    version: int
    variant: str
    rules: tuple[RuleSpec, ...]

    @cached_property
    def _hash(self) -> int:
        return hash((self.code, self.version, self.variant, self.rules))

    def __hash__(self) -> int:
        """Hashed once: the engine looks up what it worked out for a protocol (``_rules_unrolled``) at every plan,
        and hashing every rule each time would cost more than the look-up saves."""
        return self._hash

    def __reduce__(self) -> tuple:
        """Pickled by its fields alone: the hash of a string differs from process to process."""
        return (ProtocolSpec, (self.code, self.version, self.variant, self.rules))

    def rule(self, code: str) -> RuleSpec:
        """The rule with this code (KeyError if none)."""
        for rule in self.rules:
            if rule.code == code:
                return rule
        raise KeyError(code)


@dataclass(frozen=True)
class ConditionState:
    """A recorded decision that a condition holds (e.g. ``counts_low``), until a date or open-ended."""

    active: bool
    until: dt.date | None = None


def _frozen_conditions(value: Mapping[str, ConditionState] | None = None) -> Mapping[str, ConditionState]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class InfusionFacts:
    """What the engine needs to know about one infusion (read from the database by the planner)."""

    infusion_date: dt.date
    target_antigen: str
    vector_type: str
    birth_date: dt.date | None
    risk_flags: frozenset[str]
    prior_lines: int | None = None
    conditions: Mapping[str, ConditionState] = field(default_factory=_frozen_conditions, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "risk_flags", frozenset(self.risk_flags))
        object.__setattr__(self, "conditions", _frozen_conditions(self.conditions))


@dataclass(frozen=True)
class PlannedVisit:
    """One visit the protocol asks for. Identity is (rule_code, occurrence): stable across re-plans."""

    rule_code: str
    occurrence: int
    label: str
    kind: str
    due_date: dt.date
    window_start: dt.date
    window_end: dt.date
    assessments: tuple[str, ...]
    reminders: ReminderCadence


# ----------------------------------------------------------------------------------------------------
# Risk: which variant


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Age in completed years on ``on``. Someone born on 29 Feb turns a year older on 1 Mar in common
    years."""
    if on < birth_date:
        raise ValueError(f"age_on: {on.isoformat()} is before the birth date {birth_date.isoformat()}")
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def intensified_reasons(facts: InfusionFacts) -> tuple[str, ...]:
    """Why this infusion calls for the intensified variant (clinical-reference (b) "Triggers").

    Empty means standard. Recorded flags come first (sorted), then the derived triggers, so the same facts
    always give the same text, which the planner stores with a re-plan to justify it.
    """
    reasons = sorted(RISK_FLAGS & facts.risk_flags)
    if facts.prior_lines is not None and facts.prior_lines >= PRIOR_LINES_THRESHOLD:
        reasons.append(REASON_PRIOR_LINES)
    if facts.birth_date is not None and age_on(facts.birth_date, facts.infusion_date) >= AGE_THRESHOLD:
        reasons.append(REASON_AGE)
    if facts.target_antigen.casefold() == "bcma":
        reasons.append(REASON_BCMA)
    if not facts.target_antigen:
        # The product is not named yet, so it may be a BCMA product. The intensified variant is the safe plan
        # meanwhile: it is a superset of the standard one (the same visits, more often, plus the extra screening),
        # so nothing the standard plan asks for is missed; naming the product re-plans with the usual diff.
        reasons.append(REASON_PRODUCT_UNKNOWN)
    return tuple(reasons)


def choose_variant(facts: InfusionFacts) -> str:
    """``"intensified"`` if any single trigger applies (section (b): "if any one applies"), else standard."""
    return "intensified" if intensified_reasons(facts) else "standard"


def _effective_flags(facts: InfusionFacts) -> frozenset[str]:
    # Filters on ``flags`` see recorded flags and the derived triggers alike, so a protocol can say
    # {flags: [age_ge_65]} without knowing where the flag came from.
    return facts.risk_flags | frozenset(intensified_reasons(facts))


def _matches(
    filters: Mapping[str, tuple[str, ...]],
    facts: InfusionFacts,
    flags: frozenset[str],
    offset: int | None = None,
) -> bool:
    """AND across keys, OR within a key; comparisons ignore case ("BCMA" == "bcma")."""
    for key, wanted in filters.items():
        values = {w.casefold() for w in wanted}
        if key == "target":
            ok = facts.target_antigen.casefold() in values
        elif key == "vector":
            ok = facts.vector_type.casefold() in values
        elif key == "flags":
            ok = any(f.casefold() in values for f in flags)
        elif key == "offset":
            ok = offset is not None and str(offset) in values
        else:  # protocol_from_dict refuses unknown keys; a hand-built spec with one matches nobody
            ok = False
        if not ok:
            return False
    return True


def rule_applies(rule: RuleSpec, facts: InfusionFacts) -> bool:
    """Whether the rule's ``applies_to`` filter admits this infusion (empty filter: everyone).

    The rule's ``condition`` is not checked here: it depends on each occurrence's due date (see plan_visits).
    """
    return _matches(rule.applies_to, facts, _effective_flags(facts))


# ----------------------------------------------------------------------------------------------------
# Dates


def _shift(anchor: dt.date, amount: int, unit: OffsetUnit) -> dt.date:
    """``anchor`` moved by ``amount`` units, always from the anchor (never chained)."""
    months, days = _shift_parts(amount, unit)
    return anchor + days if months is None else _add_months(anchor, months)


def _shift_parts(amount: int, unit: OffsetUnit) -> tuple[int | None, dt.timedelta]:
    """What ``_shift`` moves a date by: calendar months, or None and days. Worked out once for each occurrence of a
    rule (``_rules_unrolled``), not at every plan."""
    if unit == OffsetUnit.DAY:
        return None, dt.timedelta(days=amount)
    return (amount if unit == OffsetUnit.MONTH else 12 * amount), dt.timedelta(0)


def _add_months(anchor: dt.date, months: int) -> dt.date:
    """``anchor + relativedelta(months=months)``: the same day of the month, clamped to the month's last day.

    Computed directly because a plan shifts dates some fifty times per infusion, and an import plans thousands.
    """
    years, month0 = divmod(anchor.month - 1 + months, 12)
    year = anchor.year + years
    last = 29 if month0 == 1 and calendar.isleap(year) else DAYS_IN_MONTH[month0]
    return dt.date(year, month0 + 1, min(anchor.day, last))


DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _horizon_in_units(horizon_years: int, unit: OffsetUnit) -> int:
    """An upper bound of the horizon in the rule's unit (days: 366 a year); plan_visits then cuts by date."""
    return horizon_years * {OffsetUnit.DAY: 366, OffsetUnit.MONTH: 12, OffsetUnit.YEAR: 1}[unit]


def occurrence_offsets(rule: RuleSpec, horizon_years: int) -> list[tuple[int, int]]:
    """The rule's occurrences as (occurrence number from 1, offset amount in the rule's unit).

    Numbering runs over the rule's whole sequence, so it never depends on the horizon: occurrence 3 of a rule
    is the same visit whether the horizon is 10 years or 30. Offsets beyond the horizon (in the rule's unit, a
    slight over-estimate for days) are left out, which is what bounds a lifelong rule.
    """
    if horizon_years < 0:
        raise ValueError(f"horizon_years must be >= 0, got {horizon_years}")
    bound = _horizon_in_units(horizon_years, OffsetUnit(rule.offset_unit))
    if rule.repeat_every is None:
        return [(1, rule.offset_amount)] if rule.offset_amount <= bound else []
    if rule.repeat_every < 1:
        raise ValueError(f"rule {rule.code!r}: repeat every must be >= 1, got {rule.repeat_every}")
    until = bound if rule.lifelong or rule.repeat_until is None else rule.repeat_until
    last = min(bound, until)
    amounts = range(rule.offset_amount, last + 1, rule.repeat_every)
    return [(n, amount) for n, amount in enumerate(amounts, start=1)]


def plan_visits(protocol: ProtocolSpec, facts: InfusionFacts, horizon_years: int = 30) -> list[PlannedVisit]:
    """Every visit the protocol asks for after this infusion, up to ``infusion + horizon_years``.

    Sorted by (due date, rule code, occurrence). A conditional rule yields an occurrence only while a
    recorded decision says the condition holds and, if the decision has an end date, only up to it: no
    decision, no visit (the default is not to burden a patient whose counts recovered). A conditional visit with
    a regular visit due inside its window is done at that visit (its assessments are added there), so a patient
    is never asked to come twice in the same days.
    """
    if horizon_years < 0:
        raise ValueError(f"horizon_years must be >= 0, got {horizon_years}")
    start = facts.infusion_date
    horizon_end = start + relativedelta(years=horizon_years)
    flags = _effective_flags(facts)
    visits: list[PlannedVisit] = []
    conditional: set[str] = set()  # the codes of the conditional rules that apply: most plans have none
    for unrolled in _rules_unrolled(protocol, facts.target_antigen, facts.vector_type, flags, horizon_years):
        rule = unrolled.rule
        state = facts.conditions.get(rule.condition) if rule.condition else None
        if rule.condition and (state is None or not state.active):
            continue
        if rule.condition:
            conditional.add(rule.code)
        until = state.until if state is not None else None
        for occurrence, months, days, wanted in unrolled.steps:
            due = start + days if months is None else _add_months(start, months)
            if due > horizon_end:
                continue
            if until is not None and due > until:
                continue
            visits.append(
                PlannedVisit(
                    rule_code=rule.code,
                    occurrence=occurrence,
                    label=rule.label,
                    kind=unrolled.kind,
                    due_date=due,
                    window_start=due - unrolled.before,
                    window_end=due + unrolled.after,
                    assessments=wanted,
                    reminders=rule.reminders,
                )
            )
    visits = _absorb_conditional(visits, conditional)
    visits.sort(key=lambda v: (v.due_date, v.rule_code, v.occurrence))
    return visits


@dataclass(frozen=True)
class _UnrolledRule:
    """A rule that admits an infusion, with each occurrence's number, its offset from the infusion date (months or
    None, and days: ``_shift_parts``) and the assessment codes it asks for."""

    rule: RuleSpec
    kind: str
    before: dt.timedelta
    after: dt.timedelta
    steps: tuple[tuple[int, int | None, dt.timedelta, tuple[str, ...]], ...]


@lru_cache(maxsize=256)
def _rules_unrolled(
    protocol: ProtocolSpec, target: str, vector: str, flags: frozenset[str], horizon_years: int
) -> tuple[_UnrolledRule, ...]:
    """The protocol's rules whose ``applies_to`` admits an infusion of this target, vector and flags, unrolled into
    their occurrences with the assessments each asks for: every part of a plan that does not depend on the
    infusion date or the recorded conditions, worked out once for the many infusions an import plans alike."""
    # ``_matches`` reads only the target and the vector of the facts (and the flags given beside them).
    facts = InfusionFacts(
        infusion_date=EARLIEST_INFUSION, target_antigen=target, vector_type=vector, birth_date=None, risk_flags=flags
    )
    unrolled = []
    for rule in protocol.rules:
        if not _matches(rule.applies_to, facts, flags):
            continue
        unit = OffsetUnit(rule.offset_unit)
        steps = tuple(
            (
                occurrence,
                *_shift_parts(amount, unit),
                tuple(a.code for a in rule.assessments if _matches(a.when, facts, flags, amount)),
            )
            for occurrence, amount in occurrence_offsets(rule, horizon_years)
        )
        unrolled.append(
            _UnrolledRule(
                rule=rule,
                kind=str(rule.kind),
                before=dt.timedelta(days=rule.window_before),
                after=dt.timedelta(days=rule.window_after),
                steps=steps,
            )
        )
    return tuple(unrolled)


def _absorb_conditional(visits: list[PlannedVisit], conditional_codes: set[str]) -> list[PlannedVisit]:
    """Fold each conditional visit into a regular visit due within its window, if there is one.

    ``conditional_codes``: the codes of the conditional rules that apply. None (the common case: no condition
    recorded) leaves the list as it is; a conditional rule that does not apply has no visit to fold anyway, and
    rule codes are unique within a protocol, so leaving its code out changes nothing."""
    if not conditional_codes:
        return visits
    regular = [v for v in visits if v.rule_code not in conditional_codes and v.kind not in KIND_WITHOUT_REMINDERS]
    kept: list[PlannedVisit] = []
    extra: dict[int, list[str]] = {}
    for visit in visits:
        if visit.rule_code not in conditional_codes:
            continue
        # Same trip: the regular visit falls inside the conditional visit's own window (monthly stays monthly).
        host = next((r for r in regular if visit.window_start <= r.due_date <= visit.window_end), None)
        if host is None:
            kept.append(visit)
        else:
            extra.setdefault(id(host), []).extend(a for a in visit.assessments if a not in host.assessments)
    for visit in visits:
        if visit.rule_code in conditional_codes:
            continue
        added = tuple(dict.fromkeys(extra.get(id(visit), ())))
        kept.append(replace(visit, assessments=visit.assessments + added) if added else visit)
    return kept
