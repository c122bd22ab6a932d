"""The protocol seed-file format (``seeds/protocols/*.yaml``): parse and validate it into the engine's specs.

The Django models hand the same shape back (``Protocol.as_definition``), so there is one parser and one validator
for the files and the database. Every problem is a ``ValueError`` naming the rule and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from surveillance.scheduling.engine import (
    APPLIES_TO_KEYS,
    KIND_WITHOUT_REMINDERS,
    NO_REMINDERS,
    VARIANTS,
    WHEN_KEYS,
    AssessmentSpec,
    OffsetUnit,
    ProtocolSpec,
    ReminderCadence,
    RuleSpec,
    VisitKind,
)

RULE_KEYS = frozenset(
    {
        "code",
        "label",
        "kind",
        "offset",
        "repeat",
        "window",
        "assessments",
        "applies_to",
        "condition",
        "reminders",
        "source",
    }
)
RULE_CODE_RE = re.compile(r"^[A-Z0-9_]+$")
RULE_CODE_MAX = 32  # ProtocolRule.code and FollowUpVisit.rule_code are CharField(max_length=32)
SLUG_RE = re.compile(r"^[a-z0-9_]+$")

# ----------------------------------------------------------------------------------------------------
# Parsing and validation of the seed-file format


def _where(rule_ref: str, field_name: str, problem: str) -> ValueError:
    return ValueError(f"rule {rule_ref}: {field_name}: {problem}")


def _int(value: Any, rule_ref: str, field_name: str, minimum: int | None = None) -> int:
    # bool is an int in Python; "yes" in YAML 1.1 becomes True, which is never a valid amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _where(rule_ref, field_name, f"expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise _where(rule_ref, field_name, f"must be >= {minimum}, got {value}")
    return value


def _mapping(value: Any, rule_ref: str, field_name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _where(rule_ref, field_name, f"expected a mapping, got {value!r}")
    return value


def _filter(value: Any, allowed: frozenset[str], rule_ref: str, name: str) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {}
    for key, wanted in _mapping(value, rule_ref, name).items():
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            raise _where(rule_ref, name, f"unknown key {key!r} (expected one of {expected})")
        items = wanted if isinstance(wanted, list | tuple) else [wanted]
        if not items or any(isinstance(v, bool) or v is None or str(v) == "" for v in items):
            raise _where(rule_ref, f"{name}.{key}", f"expected a non-empty list of values, got {wanted!r}")
        if key == "offset" and not all(re.fullmatch(r"-?\d+", str(v)) for v in items):
            raise _where(rule_ref, f"{name}.{key}", f"expected whole numbers, got {wanted!r}")
        result[str(key)] = tuple(str(v) for v in items)
    return result


def _text(value: Any, rule_ref: str, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _where(rule_ref, field_name, f"expected non-empty text, got {value!r}")
    return value.strip()


def _reminders(value: Any, kind: VisitKind, rule_ref: str) -> ReminderCadence:
    default = NO_REMINDERS if kind in KIND_WITHOUT_REMINDERS else ReminderCadence()
    data = _mapping(value, rule_ref, "reminders")
    unknown = set(data) - {"patient_days_before", "care_team_window_open", "escalate_overdue"}
    if unknown:
        raise _where(rule_ref, "reminders", f"unknown key(s) {', '.join(sorted(unknown))}")
    days = data.get("patient_days_before", default.patient_days_before)
    if not isinstance(days, list | tuple):
        raise _where(rule_ref, "reminders.patient_days_before", f"expected a list of days, got {days!r}")
    days = {_int(d, rule_ref, "reminders.patient_days_before", minimum=0) for d in days}
    flags = {}
    for name in ("care_team_window_open", "escalate_overdue"):
        flag = data.get(name, getattr(default, name))
        if not isinstance(flag, bool):
            raise _where(rule_ref, f"reminders.{name}", f"expected true or false, got {flag!r}")
        flags[name] = flag
    return ReminderCadence(patient_days_before=tuple(sorted(days, reverse=True)), **flags)


def _assessments(value: Any, rule_ref: str) -> tuple[AssessmentSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _where(rule_ref, "assessments", f"expected a list, got {value!r}")
    result: list[AssessmentSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value, start=1):
        where = f"assessments[{i}]"
        if not isinstance(item, Mapping):
            raise _where(rule_ref, where, f"expected a mapping with code and label, got {item!r}")
        unknown = set(item) - {"code", "label", "when"}
        if unknown:
            raise _where(rule_ref, where, f"unknown key(s) {', '.join(sorted(unknown))}")
        code = _text(item.get("code"), rule_ref, f"{where}.code")
        if not SLUG_RE.match(code):
            raise _where(rule_ref, f"{where}.code", f"{code!r} must be lower-case letters, digits and _")
        if code in seen:
            raise _where(rule_ref, f"{where}.code", f"duplicate assessment code {code!r}")
        seen.add(code)
        label = _text(item.get("label"), rule_ref, f"{where}.label")
        when = _filter(item.get("when"), WHEN_KEYS, rule_ref, f"{where}.when")
        result.append(AssessmentSpec(code, label, when))
    return tuple(result)


def _rule_from_dict(data: Any, position: int) -> RuleSpec:
    if not isinstance(data, Mapping):
        raise ValueError(f"rule #{position}: expected a mapping, got {data!r}")
    raw_code = data.get("code")
    rule_ref = f"{raw_code!r}" if isinstance(raw_code, str) and raw_code else f"#{position}"
    unknown = set(data) - RULE_KEYS
    if unknown:
        raise _where(rule_ref, ", ".join(sorted(unknown)), "unknown field")

    code = _text(raw_code, rule_ref, "code")
    if not RULE_CODE_RE.match(code) or len(code) > RULE_CODE_MAX:
        raise _where(rule_ref, "code", f"must be upper-case letters, digits and _ (at most {RULE_CODE_MAX})")
    label = _text(data.get("label"), rule_ref, "label")
    try:
        kind = VisitKind(data.get("kind"))
    except ValueError:
        expected = ", ".join(k.value for k in VisitKind)
        problem = f"unknown kind {data.get('kind')!r} (expected one of {expected})"
        raise _where(rule_ref, "kind", problem) from None

    offset = _mapping(data.get("offset"), rule_ref, "offset")
    if not offset:
        raise _where(rule_ref, "offset", "missing (expected {amount: N, unit: day|month|year})")
    amount = _int(offset.get("amount"), rule_ref, "offset.amount")
    try:
        unit = OffsetUnit(offset.get("unit"))
    except ValueError:
        raise _where(
            rule_ref, "offset.unit", f"unknown unit {offset.get('unit')!r} (expected day, month or year)"
        ) from None

    every = until = None
    lifelong = False
    repeat = _mapping(data.get("repeat"), rule_ref, "repeat")
    if repeat:
        unknown = set(repeat) - {"every", "until", "lifelong"}
        if unknown:
            raise _where(rule_ref, "repeat", f"unknown key(s) {', '.join(sorted(unknown))}")
        every = _int(repeat.get("every"), rule_ref, "repeat.every", minimum=1)
        lifelong = repeat.get("lifelong", False)
        if not isinstance(lifelong, bool):
            raise _where(rule_ref, "repeat.lifelong", f"expected true or false, got {lifelong!r}")
        has_until = repeat.get("until") is not None
        if lifelong and has_until:
            raise _where(rule_ref, "repeat", "give either until or lifelong: true, not both")
        if not lifelong and not has_until:
            raise _where(rule_ref, "repeat", "needs until (last offset, inclusive) or lifelong: true")
        if has_until:
            until = _int(repeat.get("until"), rule_ref, "repeat.until")
            if until < amount:
                raise _where(rule_ref, "repeat.until", f"{until} is before the first offset {amount}")

    window = _mapping(data.get("window"), rule_ref, "window")
    if not window:
        raise _where(rule_ref, "window", "missing (expected {before: days, after: days})")
    before = _int(window.get("before"), rule_ref, "window.before", minimum=0)
    after = _int(window.get("after"), rule_ref, "window.after", minimum=0)

    condition = data.get("condition")
    if condition is not None and (not isinstance(condition, str) or not SLUG_RE.match(condition)):
        raise _where(rule_ref, "condition", f"expected a lower-case condition code, got {condition!r}")

    return RuleSpec(
        code=code,
        label=label,
        kind=kind,
        offset_amount=amount,
        offset_unit=unit,
        repeat_every=every,
        repeat_until=until,
        lifelong=lifelong,
        window_before=before,
        window_after=after,
        assessments=_assessments(data.get("assessments"), rule_ref),
        applies_to=_filter(data.get("applies_to"), APPLIES_TO_KEYS, rule_ref, "applies_to"),
        condition=condition or None,
        reminders=_reminders(data.get("reminders"), kind, rule_ref),
        source=_text(data.get("source"), rule_ref, "source"),
    )


def _rules_from_list(rules: Any, what: str) -> list[RuleSpec]:
    if not isinstance(rules, list | tuple) or not rules:
        raise ValueError(f"{what}: rules: expected a non-empty list")
    parsed: list[RuleSpec] = []
    seen: set[str] = set()
    for position, data in enumerate(rules, start=1):
        rule = _rule_from_dict(data, position)
        if rule.code in seen:
            raise ValueError(f"rule {rule.code!r}: code: duplicate code in {what}")
        seen.add(rule.code)
        parsed.append(rule)
    return parsed


def _header(data: Any, what: str) -> tuple[str, int, str]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected a mapping at the top level")
    code = data.get("code")
    if not isinstance(code, str) or not SLUG_RE.match(code):
        raise ValueError(f"{what}: code: expected a lower-case protocol code, got {code!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{what}: version: expected a whole number >= 1, got {version!r}")
    variant = data.get("variant")
    if variant not in VARIANTS:
        raise ValueError(f"{what}: variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    return code, version, variant


def protocol_from_dict(data: dict, base: dict | None = None) -> ProtocolSpec:
    """Parse and validate a protocol in the seed-file format; ``base`` is the protocol ``extends`` names.

    Inheritance: the base's rules come first, in order; a rule of ``data`` with a base rule's code replaces
    it in place; the others are appended. Raises ValueError naming the rule and field for bad data, so a seed
    file that would plan wrong visits is refused at load time rather than discovered in a patient's schedule.
    """
    code, version, variant = _header(data, "protocol")
    what = f"protocol {code} v{version}"
    extends = data.get("extends")
    own = _rules_from_list(data.get("rules"), what)
    if not extends:
        if base is not None:
            raise ValueError(f"{what}: extends: a base protocol was given but the protocol extends nothing")
        return ProtocolSpec(code=code, version=version, variant=variant, rules=tuple(own))

    if base is None:
        raise ValueError(f"{what}: extends: {extends!r} needs its base protocol, and none was given")
    base_code, base_version, _ = _header(base, f"{what}: base")
    wanted_code, _, wanted_version = str(extends).partition("@")
    if base_code != wanted_code or (wanted_version and wanted_version != str(base_version)):
        raise ValueError(f"{what}: extends: {extends!r}, but the base given is {base_code} v{base_version}")
    if base.get("extends"):
        raise ValueError(f"{what}: extends: the base {base_code} v{base_version} extends another itself")
    base_rules = _rules_from_list(base.get("rules"), f"base {base_code} v{base_version}")
    merged = {rule.code: rule for rule in base_rules}
    for rule in own:
        merged[rule.code] = rule  # dict keeps the base position of a replaced rule
    return ProtocolSpec(code=code, version=version, variant=variant, rules=tuple(merged.values()))


def load_protocol_file(path: str | Path, base_path: str | Path | None = None) -> ProtocolSpec:
    """Parse a protocol YAML file (tests and scripts; the seeding command has its own file handling).

    Without ``base_path``, a protocol that ``extends`` another is resolved against the highest matching
    version in the same folder. PyYAML is imported here, not at the top, so the engine itself needs only
    dateutil.
    """
    import yaml

    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping at the top level")
    base = None
    if base_path is not None:
        base = yaml.safe_load(Path(base_path).read_text(encoding="utf-8"))
    elif data.get("extends"):
        code, _, version = str(data["extends"]).partition("@")
        candidates = []
        for sibling in sorted(path.parent.glob("*.yaml")):
            other = yaml.safe_load(sibling.read_text(encoding="utf-8"))
            if not isinstance(other, dict) or other.get("code") != code:
                continue
            if isinstance(other.get("version"), int) and (not version or str(other["version"]) == version):
                candidates.append((other["version"], other))
        if not candidates:
            raise ValueError(f"{path.name}: extends {data['extends']!r}, which no sibling file defines")
        base = max(candidates, key=lambda c: c[0])[1]
    try:
        return protocol_from_dict(data, base=base)
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
