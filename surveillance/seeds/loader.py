"""Loading the seed data files (product catalogue, protocol versions, signal rules) into the database.

Idempotent: loading the same files twice changes nothing. A protocol or signal rules version, once loaded, is
immutable: a file whose content differs from the stored version of the same number is refused, so a change must be
a new version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.db import transaction
from django.utils import timezone

from surveillance.models import CarTProduct, ProductCode, Protocol, ProtocolRule, ProtocolStatus, SignalRuleSet
from surveillance.scheduling import engine, protocol_file
from surveillance.seeds import analytes, labels
from surveillance.signals.rules import ruleset_from_dict

PRODUCT_FIELDS = (
    "brand",
    "generic_name",
    "abbreviation",
    "manufacturer",
    "target_antigen",
    "vector_type",
    "costimulation",
    "approved_on",
    "rems_status",
    "boxed_warning_secondary_malignancy",
    "source",
)


class SeedError(Exception):
    """A seed file is invalid or conflicts with what is stored; the message names the file and the problem."""


@dataclass
class SeedReport:
    products_created: int = 0
    products_updated: int = 0
    codes_created: int = 0
    protocols_created: list[str] = field(default_factory=list)
    protocols_unchanged: list[str] = field(default_factory=list)
    signal_rules_created: list[str] = field(default_factory=list)
    signal_rules_unchanged: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"products: {self.products_created} created, {self.products_updated} updated; "
            f"codes: {self.codes_created} created; protocols: {', '.join(self.protocols_created) or 'none'} created, "
            f"{len(self.protocols_unchanged)} unchanged; "
            f"signal rules: {', '.join(self.signal_rules_created) or 'none'} created, "
            f"{len(self.signal_rules_unchanged)} unchanged"
        )


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SeedError(f"{path.name}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise SeedError(f"{path.name}: expected a mapping at the top level")
    return data


def seeds_load(seeds_dir: Path) -> SeedReport:
    """Load ``products.yaml``, every ``protocols/*.yaml`` and every ``signals/*.yaml`` in one transaction, once
    ``labels.yaml`` is found to label every assessment the protocols name."""
    report = SeedReport()
    with transaction.atomic():
        products_load(_read_yaml(seeds_dir / "products.yaml"), report)
        assessments, rule_codes = protocols_load(sorted((seeds_dir / "protocols").glob("*.yaml")), report)
        labels_check(seeds_dir, assessments, rule_codes)
        signal_rules_load(sorted((seeds_dir / "signals").glob("*.yaml")), report)
    return report


def products_load(data: dict, report: SeedReport) -> None:
    for item in data.get("products", []):
        values = {name: item.get(name) for name in PRODUCT_FIELDS if name in item}
        for name in ("abbreviation", "costimulation", "rems_status", "source"):
            values[name] = values.get(name) or ""
        contact = item.get("safety_contact") or {}
        values.update(
            safety_contact_phone=contact.get("phone") or "",
            safety_contact_url=contact.get("url") or "",
            safety_contact_note=(contact.get("note") or "")[:255],
        )
        product, created = CarTProduct.objects.get_or_create(code=item["code"], defaults=values)
        if created:
            report.products_created += 1
        elif any(
            getattr(product, k) != (dt.date.fromisoformat(v) if k == "approved_on" and isinstance(v, str) else v)
            for k, v in values.items()
        ):
            CarTProduct.objects.filter(pk=product.pk).update(**values)
            report.products_updated += 1
        _codes_load(item.get("codes", []), product, report)
    _codes_load(data.get("generic_administration_codes", []), None, report)


def _codes_load(rows: list[dict], product: CarTProduct | None, report: SeedReport) -> None:
    for row in rows:
        _, created = ProductCode.objects.update_or_create(
            system=row["system"],
            code=str(row["code"]),
            defaults={
                "product": product,
                "display": (row.get("display") or "")[:255],
                "marks_infusion": bool(row.get("marks_infusion", product is not None)),
            },
        )
        report.codes_created += created


def _definitions(paths: list[Path]) -> dict[tuple[str, int], tuple[Path, dict]]:
    found: dict[tuple[str, int], tuple[Path, dict]] = {}
    for path in paths:
        data = _read_yaml(path)
        try:
            key = (str(data["code"]), int(data["version"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"{path.name}: a protocol needs a code and an integer version") from exc
        if key in found:
            raise SeedError(f"{path.name}: {key[0]} v{key[1]} is also defined in {found[key][0].name}")
        found[key] = (path, data)
    return found


def _base_of(data: dict, found: dict, path: Path) -> dict | None:
    extends = data.get("extends")
    if not extends:
        return None
    code, _, version = str(extends).partition("@")
    if not version.isdigit():
        # A base that floated to its newest version would change this protocol whenever the base gets a new one.
        raise SeedError(f"{path.name}: extends must name a version, e.g. {code}@1, not {extends!r}")
    if (code, int(version)) not in found:
        raise SeedError(f"{path.name}: extends {extends!r}, which no seed file defines")
    return found[(code, int(version))][1]


def _rule_fields(rule: engine.RuleSpec) -> dict:
    return {
        "code": rule.code,
        "label": rule.label,
        "kind": str(rule.kind),
        "offset_amount": rule.offset_amount,
        "offset_unit": str(rule.offset_unit),
        "repeat_every": rule.repeat_every,
        "repeat_until": None if rule.lifelong else rule.repeat_until,
        "lifelong": rule.lifelong,
        "window_before_days": rule.window_before,
        "window_after_days": rule.window_after,
        "assessments": [
            {
                "code": a.code,
                "label": a.label,
                **({"when": {k: list(v) for k, v in a.when.items()}} if a.when else {}),
            }
            for a in rule.assessments
        ],
        "applies_to": {k: list(v) for k, v in rule.applies_to.items()},
        "condition": rule.condition or "",
        "reminders": dataclasses.asdict(rule.reminders),
        "source": rule.source,
    }


def labels_check(seeds_dir: Path, assessments: set[str], rule_codes: set[str]) -> None:
    """The labels catalogue and the analytes parse, and every assessment code a protocol names, every analyte,
    every rule code (a visit's name) and every status and request the models define has a label in every
    language."""
    try:
        catalogue = labels.catalogue_read(seeds_dir)
        analyte_codes = analytes.analytes_read(seeds_dir)
    except labels.LabelsError as exc:
        raise SeedError(f"{labels.FILE_NAME}: {exc}") from exc
    except analytes.AnalytesError as exc:
        raise SeedError(f"{analytes.FILE_NAME}: {exc}") from exc
    for section, codes in (("assessments", assessments), ("analytes", analyte_codes), ("visits", rule_codes)):
        missing = catalogue.missing(section, codes)
        if missing:
            raise SeedError(f"{labels.FILE_NAME}: {section} without a label: {', '.join(missing)}")
    unlabelled = sorted(code for code in labels.CHOICE_CODES if catalogue.find(code) is None)
    if unlabelled:
        raise SeedError(f"{labels.FILE_NAME}: statuses or requests without a label: {', '.join(unlabelled)}")


def protocols_load(paths: list[Path], report: SeedReport) -> tuple[set[str], set[str]]:
    """Store each protocol version once; returns the assessment and the rule codes the files name (for the labels
    check)."""
    found = _definitions(paths)
    assessments: set[str] = set()
    rule_codes: set[str] = set()
    for (code, version), (path, data) in sorted(found.items()):
        try:
            spec = protocol_file.protocol_from_dict(data, base=_base_of(data, found, path))
        except ValueError as exc:
            raise SeedError(f"{path.name}: {exc}") from exc
        assessments.update(a.code for rule in spec.rules for a in rule.assessments)
        rule_codes.update(rule.code for rule in spec.rules)
        rules = [_rule_fields(rule) for rule in spec.rules]
        digest = hashlib.sha256(
            json.dumps({"variant": spec.variant, "rules": rules}, sort_keys=True, default=str).encode()
        ).hexdigest()
        stored = Protocol.objects.filter(code=code, version=version).first()
        if stored is not None:
            if stored.content_hash != digest:
                raise SeedError(
                    f"{path.name}: {code} v{version} is already loaded with different content; "
                    "protocols are immutable once loaded, so give the change a new version number"
                )
            report.protocols_unchanged.append(f"{code} v{version}")
            continue
        active = data.get("status", "active") == "active"
        protocol = Protocol.objects.create(
            code=code,
            version=version,
            name=data.get("name") or f"{code} v{version}",
            variant=spec.variant,
            description=data.get("description") or "",
            source=data.get("source") or "",
            status=ProtocolStatus.ACTIVE if active else ProtocolStatus.DRAFT,
            activated_at=timezone.now() if active else None,
            content_hash=digest,
        )
        ProtocolRule.objects.bulk_create(
            ProtocolRule(protocol=protocol, position=i, **fields) for i, fields in enumerate(rules, start=1)
        )
        report.protocols_created.append(f"{code} v{version}")
    return assessments, rule_codes


def signal_rules_load(paths: list[Path], report: SeedReport) -> None:
    """Store each signal rules version once, checked by the parser that evaluates it; a changed file is refused."""
    for path in paths:
        data = _read_yaml(path)
        try:
            rules = ruleset_from_dict(data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise SeedError(f"{path.name}: {exc}") from exc
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
        label = f"{rules.code} v{rules.version}"
        stored = SignalRuleSet.objects.filter(code=rules.code, version=rules.version).first()
        if stored is not None:
            if stored.content_hash != digest:
                raise SeedError(
                    f"{path.name}: signal rules {label} are already loaded with different content; "
                    "they are immutable once loaded, so give the change a new version number"
                )
            report.signal_rules_unchanged.append(label)
            continue
        SignalRuleSet.objects.create(
            code=rules.code,
            version=rules.version,
            name=data.get("name") or label,
            source=data.get("source") or "",
            content=json.loads(json.dumps(data, default=str)),
            content_hash=digest,
        )
        report.signal_rules_created.append(label)
