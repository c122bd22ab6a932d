"""Second-cancer signals: a patient's blood results and diagnoses + the signal rules -> the signals to raise.

Pure on purpose, like the schedule engine: no Django, no database, no clock. The service (``signals.review``)
records what this module says, so the same records always give the same signals, and a re-import raises nothing
new (each signal carries a key naming the evidence it rests on).

Conventions (clinical-reference.md section (g)):

- Day 0 is the infusion date; a rule counts results from its ``from_day`` on (day 31 for the cytopenias: early
  cytopenia, day 0-30, is expected after CAR-T, ICAHT).
- A value is compared in the canonical unit of its quantity; a result whose unit the rules file cannot convert
  raises nothing and is listed in ``Evaluation.unconverted`` so the caller can say so.
- A diagnosis with onset before the infusion date is history, not a signal. A haematologic diagnosis in the same
  ICD-10 category as the infusion's own indication is a possible relapse, not a second cancer.
- Nothing here holds protected health information: summaries carry codes, values, units and days only.

The rules come from a versioned seed file (``seeds/signals/*.yaml``), parsed and validated by
``ruleset_from_dict``, from the file and from the stored copy alike.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from surveillance.signals.ctcae import Measure, ctcae_grade

__all__ = [
    "PRIORITIES",
    "ClinicalRecords",
    "Diagnosis",
    "Evaluation",
    "InfusionFacts",
    "LabResult",
    "RaisedSignal",
    "RuleSet",
    "VariantResult",
    "indication_codes",
    "ruleset_from_dict",
    "signals_evaluate",
]

#: Priority names in the rules file and their rank (1 = most urgent), the order of the physician's worklist.
PRIORITIES: Mapping[str, int] = {"highest": 1, "high": 2, "medium": 3, "lower": 4}

_ICD10 = re.compile(r"^[A-Z]\d{2}(?:\.?[0-9A-Z]{1,4})?$")
_ICD10_RANGE = re.compile(r"^([A-Z]\d{2})-([A-Z]\d{2})$")
_ICD10_IN_TEXT = re.compile(r"\b[A-Z]\d{2}(?:\.[0-9A-Z]{1,4})?\b")
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


# --------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class LabResult:
    """One blood result. ``reference`` names the source record (e.g. ``Observation/abc``): the evidence key."""

    loinc: str
    value: float
    unit: str
    effective: dt.date
    reference: str = ""
    reference_low: float | None = None  # the laboratory's lower limit of normal, in ``unit``
    reference_high: float | None = None  # its upper limit, in ``unit`` (stored on the visit's results)
    interpretation: str = ""  # the laboratory's flag: "normal", "abnormal" or "" when it gives none

    @property
    def key(self) -> str:
        return self.reference or f"{self.loinc}@{self.effective.isoformat()}={self.value:g} {self.unit}"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One coded diagnosis; ``system`` is ``icd10`` or ``snomed``. No onset date means it cannot be placed."""

    system: str
    code: str
    onset: dt.date | None
    reference: str = ""

    @property
    def key(self) -> str:
        onset = self.onset.isoformat() if self.onset else "?"
        return self.reference or f"{self.system}:{self.code}@{onset}"


@dataclass(frozen=True, slots=True)
class VariantResult:
    """One gene variant on an NGS panel: the gene and its variant allele frequency in percent."""

    gene: str
    vaf_percent: float
    effective: dt.date
    reference: str = ""


@dataclass(frozen=True, slots=True)
class ClinicalRecords:
    """What the rules read. ``history``: results already on file (stored on the patient's visits), which the new
    ``labs`` are compared with (is a high MCV new? did a grade rise?) but which never raise a signal again: an
    export arrives in batches and over years, and a comparison must not stop at the edge of one."""

    labs: tuple[LabResult, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()
    variants: tuple[VariantResult, ...] = ()
    history: tuple[LabResult, ...] = ()


@dataclass(frozen=True, slots=True)
class InfusionFacts:
    infusion_date: dt.date
    indication_codes: tuple[str, ...] = ()  # ICD-10-CM codes of the disease the infusion treated, if known


def indication_codes(text: str) -> tuple[str, ...]:
    """The ICD-10 codes written in an infusion's indication (e.g. "DLBCL (C83.3)" -> ("C83.3",))."""
    return tuple(dict.fromkeys(_ICD10_IN_TEXT.findall(text.upper())))


# --------------------------------------------------------------------------------------------- the rules
@dataclass(frozen=True, slots=True)
class Quantity:
    canonical: str
    factors: Mapping[str, float]  # normalised unit -> factor to the canonical unit

    def convert(self, value: float, unit: str) -> float | None:
        factor = self.factors.get(_unit_key(unit))
        return None if factor is None else value * factor


@dataclass(frozen=True, slots=True)
class LabRule:
    kind: str
    label: str
    loinc: frozenset[str]
    quantity: str
    priority: int
    source: str
    from_day: int = 0
    below: float | None = None
    above: float | None = None
    new: bool = False
    measure: Measure | None = None
    lln: float | None = None

    def abnormal(self, value: float) -> bool:
        return (self.below is not None and value < self.below) or (self.above is not None and value > self.above)


@dataclass(frozen=True, slots=True)
class SimpleRule:
    """A rule with no thresholds of its own: worsening cytopenia, a CH clone, possible relapse."""

    kind: str
    label: str
    priority: int
    source: str
    of: tuple[str, ...] = ()
    from_day: int = 0
    min_vaf_percent: float = 0.0
    rise_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class DiagnosisRule:
    kind: str
    label: str
    priority: int
    source: str
    prefixes: tuple[str, ...]  # normalised ICD-10 (no dot)
    ranges: tuple[tuple[str, str], ...]  # ICD-10 categories, inclusive
    snomed: frozenset[str]
    malignancy_type: str | None = None
    relapse_if_indication: bool = False

    def matches(self, diagnosis: Diagnosis) -> bool:
        if diagnosis.system == "snomed":
            return diagnosis.code in self.snomed
        code = _icd10_key(diagnosis.code)
        return any(code.startswith(p) for p in self.prefixes) or any(lo <= code[:3] <= hi for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class RuleSet:
    code: str
    version: int
    units: Mapping[str, Quantity]
    laboratory: tuple[LabRule, ...]
    worsening: SimpleRule
    clonal: SimpleRule
    diagnoses: tuple[DiagnosisRule, ...]
    relapse: SimpleRule

    @property
    def laboratory_loincs(self) -> tuple[str, ...]:
        """Every LOINC code a laboratory rule reads: the results worth comparing new ones with."""
        return tuple(sorted({code for rule in self.laboratory for code in rule.loinc}))

    def kinds(self) -> dict[str, str]:
        """Every signal kind the rules can raise, with its label."""
        rules = [*self.laboratory, self.worsening, self.clonal, *self.diagnoses, self.relapse]
        return {rule.kind: rule.label for rule in rules}


def _unit_key(unit: str) -> str:
    return "".join(unit.split()).lower()


def _icd10_key(code: str) -> str:
    return code.strip().upper().replace(".", "")


def _get(data: Mapping[str, Any], name: str, where: str) -> Any:
    value = data.get(name)
    if value is None or value == "" or value == []:
        raise ValueError(f"{where}: {name} is required")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _common(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    kind = str(_get(data, "kind", where))
    if not _KIND.match(kind):
        raise ValueError(f"{where}: kind {kind!r} must be lower-case letters, digits and _")
    priority = str(_get(data, "priority", where))
    if priority not in PRIORITIES:
        raise ValueError(f"{where}: priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    return {
        "kind": kind,
        "label": str(_get(data, "label", where)),
        "priority": PRIORITIES[priority],
        "source": str(_get(data, "source", where)),
    }


def _lab_rule(data: Mapping[str, Any], where: str, units: Mapping[str, Quantity]) -> LabRule:
    common = _common(data, where)
    quantity = str(_get(data, "quantity", where))
    if quantity not in units:
        raise ValueError(f"{where}: quantity {quantity!r} is not in units")
    below, above = data.get("below"), data.get("above")
    if (below is None) == (above is None):
        raise ValueError(f"{where}: give exactly one of below and above")
    measure = data.get("measure")
    if measure is not None and measure not in Measure.__members__.values():
        raise ValueError(f"{where}: measure must be one of {', '.join(Measure)}, got {measure!r}")
    return LabRule(
        **common,
        loinc=frozenset(str(code) for code in _get(data, "loinc", where)),
        quantity=quantity,
        from_day=int(_number(data.get("from_day", 0), where)),
        below=None if below is None else _number(below, where),
        above=None if above is None else _number(above, where),
        new=bool(data.get("new", False)),
        measure=Measure(measure) if measure else None,
        lln=None if data.get("lln") is None else _number(data["lln"], where),
    )


def _diagnosis_rule(data: Mapping[str, Any], where: str) -> DiagnosisRule:
    common = _common(data, where)
    prefixes, ranges = [], []
    for spec in data.get("icd10") or []:
        spec = str(spec).strip().upper()
        if match := _ICD10_RANGE.match(spec):
            ranges.append((match.group(1), match.group(2)))
        elif _ICD10.match(spec):
            prefixes.append(_icd10_key(spec))
        else:
            raise ValueError(f"{where}: {spec!r} is neither an ICD-10 code nor a range like C81-C96")
    snomed = frozenset(str(code) for code in data.get("snomed") or [])
    if not (prefixes or ranges or snomed):
        raise ValueError(f"{where}: give icd10 or snomed codes")
    return DiagnosisRule(
        **common,
        prefixes=tuple(prefixes),
        ranges=tuple(ranges),
        snomed=snomed,
        malignancy_type=data.get("malignancy_type") or None,
        relapse_if_indication=bool(data.get("relapse_if_indication", False)),
    )


def units_from_dict(data: Mapping[str, Any], where: str = "units") -> dict[str, Quantity]:
    """A units table (quantity -> canonical unit and factors to it), as the signal rules and the analytes
    catalogue write it; a ValueError names the quantity and the problem."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of quantity to canonical unit and factors")
    units: dict[str, Quantity] = {}
    for name, spec in data.items():
        at = f"{where}.{name}"
        if not isinstance(spec, Mapping) or not isinstance(spec.get("factors"), Mapping):
            raise ValueError(f"{at}: expected canonical and factors")
        factors = {_unit_key(str(unit)): _number(factor, at) for unit, factor in _get(spec, "factors", at).items()}
        units[str(name)] = Quantity(str(_get(spec, "canonical", at)), factors)
    return units


def ruleset_from_dict(data: Mapping[str, Any]) -> RuleSet:
    """Parse and check a signal rules file; a ValueError names the rule and the problem."""
    units = units_from_dict(_get(data, "units", "units"))
    laboratory = tuple(
        _lab_rule(rule, f"laboratory[{i}]", units) for i, rule in enumerate(_get(data, "laboratory", "rules"), 1)
    )
    worsening_data = _get(data, "worsening_cytopenia", "rules")
    lab_kinds = {rule.kind: rule for rule in laboratory}
    of = tuple(str(kind) for kind in _get(worsening_data, "of", "worsening_cytopenia"))
    for kind in of:
        if kind not in lab_kinds or lab_kinds[kind].measure is None:
            raise ValueError(f"worsening_cytopenia: {kind!r} is not a laboratory rule with a measure")
    worsening = SimpleRule(
        **_common(worsening_data, "worsening_cytopenia"),
        of=of,
        from_day=int(_number(worsening_data.get("from_day", 0), "worsening_cytopenia")),
    )
    clonal_data = _get(data, "clonal_haematopoiesis", "rules")
    clonal = SimpleRule(
        **_common(clonal_data, "clonal_haematopoiesis"),
        min_vaf_percent=_number(_get(clonal_data, "min_vaf_percent", "clonal_haematopoiesis"), "clonal_haematopoiesis"),
        rise_percent=_number(_get(clonal_data, "rise_percent", "clonal_haematopoiesis"), "clonal_haematopoiesis"),
    )
    diagnoses = tuple(
        _diagnosis_rule(rule, f"diagnoses[{i}]") for i, rule in enumerate(_get(data, "diagnoses", "rules"), 1)
    )
    ruleset = RuleSet(
        code=str(_get(data, "code", "rules")),
        version=int(_number(_get(data, "version", "rules"), "version")),
        units=units,
        laboratory=laboratory,
        worsening=worsening,
        clonal=clonal,
        diagnoses=diagnoses,
        relapse=SimpleRule(**_common(_get(data, "possible_relapse", "rules"), "possible_relapse")),
    )
    all_kinds = [*lab_kinds, worsening.kind, clonal.kind, *(rule.kind for rule in diagnoses), ruleset.relapse.kind]
    duplicates = sorted({kind for kind in all_kinds if all_kinds.count(kind) > 1})
    if duplicates:
        raise ValueError(f"rules: kind(s) {', '.join(duplicates)} defined twice")
    return ruleset


# --------------------------------------------------------------------------------------------- evaluation
@dataclass(frozen=True, slots=True)
class RaisedSignal:
    """One signal to record. ``key`` names the evidence, so recording the same evidence twice raises it once."""

    kind: str
    label: str
    priority: int
    observed_on: dt.date
    day: int
    key: str
    code: str
    summary: str
    source: str
    grade: int | None = None
    malignancy_type: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    signals: tuple[RaisedSignal, ...]
    unconverted: tuple[str, ...] = ()  # one line per result whose unit could not be converted
    undated: tuple[str, ...] = ()  # diagnoses that could not be placed before or after the infusion


@dataclass(slots=True)
class _Converted:
    result: LabResult
    value: float
    lln: float | None
    day: int
    known: bool = False  # from the history: compared with, never signalled

    def grade(self, rule: LabRule) -> int:
        assert rule.measure is not None
        return ctcae_grade(rule.measure, self.value, self.lln)


@dataclass(slots=True)
class _Collector:
    facts: InfusionFacts
    signals: list[RaisedSignal] = field(default_factory=list)

    def add(
        self, rule: LabRule | SimpleRule | DiagnosisRule, on: dt.date, key: str, code: str, summary: str, **extra
    ) -> None:
        day = (on - self.facts.infusion_date).days
        self.signals.append(
            RaisedSignal(
                kind=rule.kind,
                label=rule.label,
                priority=rule.priority,
                observed_on=on,
                day=day,
                key=key,
                code=code,
                summary=f"{summary}, day {day}",
                source=rule.source,
                **extra,
            )
        )


def _convert(
    ruleset: RuleSet, records: ClinicalRecords, facts: InfusionFacts
) -> tuple[dict[str, list[_Converted]], list[str]]:
    """Each rule's results in canonical units, oldest first (the history's among them, a result both on file and
    in the records counted once, as new), and the new results that could not be converted."""
    by_kind: dict[str, list[_Converted]] = {rule.kind: [] for rule in ruleset.laboratory}
    unconverted: list[str] = []
    new_keys = {result.key for result in records.labs}
    known = [(result, True) for result in records.history if result.key not in new_keys]
    for result, on_file in sorted(
        [*((r, False) for r in records.labs), *known], key=lambda x: (x[0].effective, x[0].key)
    ):
        for rule in ruleset.laboratory:
            if result.loinc not in rule.loinc:
                continue
            quantity = ruleset.units[rule.quantity]
            value = quantity.convert(result.value, result.unit)
            if value is None:
                if on_file:
                    continue
                unconverted.append(
                    f"LOINC {result.loinc} on {result.effective.isoformat()}: unit {result.unit or '(none)'!r} "
                    f"cannot be converted to {quantity.canonical}; no signal raised from it"
                )
                continue
            low = result.reference_low
            lln = quantity.convert(low, result.unit) if low is not None else rule.lln
            day = (result.effective - facts.infusion_date).days
            by_kind[rule.kind].append(_Converted(result, value, lln, day, known=on_file))
    return by_kind, unconverted


def _laboratory(ruleset: RuleSet, by_kind: dict[str, list[_Converted]], out: _Collector) -> None:
    for rule in ruleset.laboratory:
        results = by_kind[rule.kind]
        for index, item in enumerate(results):
            if item.day < rule.from_day or not rule.abnormal(item.value):
                continue
            if rule.new and any(rule.abnormal(earlier.value) for earlier in results[:index]):
                break  # not new: an earlier result was already abnormal
            if item.known:  # on file already: it was this rule's evidence when it came, or it was not new then
                if rule.new:
                    break
                continue
            grade = item.grade(rule) if rule.measure else None
            summary = f"LOINC {item.result.loinc} {item.value:g} {ruleset.units[rule.quantity].canonical}"
            if grade is not None:
                summary += f" (CTCAE grade {grade})"
            out.add(rule, item.result.effective, item.result.key, item.result.loinc, summary, grade=grade)
            if rule.new:
                break  # one signal for the change from normal


def _worsening(ruleset: RuleSet, by_kind: dict[str, list[_Converted]], out: _Collector) -> None:
    rule = ruleset.worsening
    lab_rules = {lab.kind: lab for lab in ruleset.laboratory}
    for kind in rule.of:
        lab = lab_rules[kind]
        counted = [item for item in by_kind[kind] if item.day >= rule.from_day]
        for earlier, later in itertools.pairwise(counted):
            before, after = earlier.grade(lab), later.grade(lab)
            if before >= 1 and after > before and not later.known:
                summary = f"{lab.measure} CTCAE grade {before} to {after}"
                out.add(rule, later.result.effective, later.result.key, later.result.loinc, summary, grade=after)


def _clonal(ruleset: RuleSet, variants: Sequence[VariantResult], out: _Collector) -> None:
    rule = ruleset.clonal
    panels: dict[dt.date, dict[str, VariantResult]] = {}
    for variant in variants:
        panel = panels.setdefault(variant.effective, {})
        gene = variant.gene.strip().upper()
        if gene not in panel or variant.vaf_percent > panel[gene].vaf_percent:
            panel[gene] = variant
    last_vaf: dict[str, float] = {}
    for on in sorted(panels):
        for gene, variant in sorted(panels[on].items()):
            previous = last_vaf.get(gene)
            counts = on >= out.facts.infusion_date and variant.vaf_percent >= rule.min_vaf_percent
            key = variant.reference or f"{gene}@{on.isoformat()}"
            if counts and previous is None:
                out.add(rule, on, key, gene, f"{gene} new clone, VAF {variant.vaf_percent:g}%")
            elif counts and variant.vaf_percent - previous >= rule.rise_percent:
                out.add(rule, on, key, gene, f"{gene} VAF {previous:g}% to {variant.vaf_percent:g}%")
            last_vaf[gene] = variant.vaf_percent


def _diagnoses(ruleset: RuleSet, diagnoses: Iterable[Diagnosis], out: _Collector) -> list[str]:
    undated = []
    indication_categories = {_icd10_key(code)[:3] for code in out.facts.indication_codes}
    for diagnosis in diagnoses:
        rule = next((r for r in ruleset.diagnoses if r.matches(diagnosis)), None)
        if rule is None:
            continue
        if diagnosis.onset is None:
            undated.append(f"{diagnosis.system} {diagnosis.code}: no onset or recorded date; no signal raised")
            continue
        if diagnosis.onset < out.facts.infusion_date:
            continue  # history, not a signal
        code = f"{diagnosis.system}:{diagnosis.code}"
        relapse = (
            rule.relapse_if_indication
            and diagnosis.system == "icd10"
            and _icd10_key(diagnosis.code)[:3] in indication_categories
        )
        if relapse:
            summary = f"{diagnosis.code} matches the infusion's indication"
            out.add(ruleset.relapse, diagnosis.onset, diagnosis.key, code, summary)
        else:
            out.add(rule, diagnosis.onset, diagnosis.key, code, diagnosis.code, malignancy_type=rule.malignancy_type)
    return undated


def signals_evaluate(ruleset: RuleSet, facts: InfusionFacts, records: ClinicalRecords) -> Evaluation:
    """The signals the records raise after this infusion, most urgent first, then oldest first."""
    out = _Collector(facts)
    by_kind, unconverted = _convert(ruleset, records, facts)
    _laboratory(ruleset, by_kind, out)
    _worsening(ruleset, by_kind, out)
    _clonal(ruleset, records.variants, out)
    undated = _diagnoses(ruleset, records.diagnoses, out)
    signals = sorted(out.signals, key=lambda s: (s.priority, s.observed_on, s.kind, s.key))
    return Evaluation(tuple(signals), tuple(unconverted), tuple(undated))
