"""FHIR R4 blood results, diagnoses and NGS variants -> the plain records the second-cancer signals read.

Validation is fhir.resources' (pydantic) models for FHIR R4B, as in ``parse``: Observation, Condition and
DiagnosticReport have the same JSON structure in R4 and R4B. The caller passes the resources of one patient (a
Bundle, or decoded NDJSON lines) and hands the records to ``surveillance.signals.review.signals_record``.

What is kept, and what is left out on purpose (each left-out resource is listed with its reason):

- Observation (status final, amended or corrected) with a LOINC code and a numeric ``valueQuantity``: one
  ``LabResult``, unit as the UCUM code (else the unit text), the reference range's bounds when they are in the
  same unit, and the laboratory's interpretation flag (the visit's results keep them). LOINC components of a panel
  (e.g. a CBC sent as one Observation) become results of their own.
- An Observation coded 69548-6 (genetic variant assessment, HL7 genomics reporting) with a gene studied
  (48018-6) and a variant allele frequency (81258-6, a fraction, or a percentage when the unit says %): one
  ``VariantResult``. A DiagnosticReport's contained variant Observations count too, dated by the report when they
  carry no date of their own.
- Condition not refuted nor entered in error: one ``Diagnosis``, ICD-10(-CM) preferred over SNOMED CT when both
  are sent; its onset is onsetDateTime, onsetPeriod.start or else recordedDate (only full dates: a partial date
  cannot be placed before or after an infusion).
- The date of a result is the date as written in its own offset.

An EHR sends a patient's blood counts by the thousand, nearly all in one plain shape (a LOINC-coded laboratory
Observation with a UCUM quantity, a reference range and perhaps an interpretation flag). Full validation costs about
half a millisecond each, more than everything else an import does with them, so an Observation in exactly that shape
(``plain_observation``: every element known, every value of the expected type and in a stricter form than FHIR's
own, as ``plain`` reads it) is read without it, to the same record. Anything else, a single unexpected element or a
value in a form the plain reading is not sure of, goes through full validation, which accepts or refuses it as
before.

No value read here is echoed in a reason: reasons name codes, statuses and FHIRPaths only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from pydantic import ValidationError

from surveillance.imports.fhir import plain
from surveillance.imports.fhir.records import Ignored
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult, VariantResult

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
RESULT_STATUSES = frozenset({"final", "amended", "corrected"})
DISCARDED_VERIFICATION = frozenset({"refuted", "entered-in-error"})

VARIANT_ASSESSMENT = "69548-6"
GENE_STUDIED = "48018-6"
VARIANT_ALLELE_FREQUENCY = "81258-6"

INTERPRETATION_SYSTEMS = frozenset({"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"})
ABNORMAL_FLAGS = frozenset({"A", "AA", "H", "HH", "HU", "L", "LL", "LU"})

MODELS: dict[str, Any] = {"Observation": Observation, "Condition": Condition, "DiagnosticReport": DiagnosticReport}
#: Read by the visit reconciliation (``care.reconcile``), not here: passed over without being listed as left out.
RECONCILED_TYPES = frozenset({"Encounter", "Appointment"})


@dataclass
class ClinicalParse:
    """The records found, and every resource left out with its reason."""

    labs: list[LabResult] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    variants: list[VariantResult] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    def records(self) -> ClinicalRecords:
        return ClinicalRecords(tuple(self.labs), tuple(self.diagnoses), tuple(self.variants))

    def ignore(self, resource_type: str, source_id: str, reason: str) -> None:
        self.ignored.append(Ignored(resource_type, source_id, reason))


def _resources(items: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The resources themselves, a Bundle's entries unwrapped."""
    for item in items:
        if isinstance(item, Mapping) and item.get("resourceType") == "Bundle":
            yield from _resources(entry.get("resource") for entry in item.get("entry") or [] if entry)
        elif isinstance(item, Mapping):
            yield item


def _full_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None  # a partial date ("2013-04") arrives as a string


def _codes(concept: Any, systems: frozenset[str]) -> list[str]:
    codings = getattr(concept, "coding", None) or []
    return [str(c.code) for c in codings if c.system in systems and c.code]


def _number(quantity: Any) -> tuple[float, str] | None:
    value = getattr(quantity, "value", None)
    if not isinstance(value, int | float | Decimal):
        return None
    unit = getattr(quantity, "code", None) or getattr(quantity, "unit", None) or ""
    return float(value), str(unit)


def _reference_range(model: Any, unit: str) -> dict[str, float | None]:
    """The first reference range's bounds given in the result's own unit (a bound in another unit is left out)."""
    for reference in getattr(model, "referenceRange", None) or []:
        low, high = _number(reference.low), _number(reference.high)
        bounds = {
            "reference_low": low[0] if low is not None and low[1] == unit else None,
            "reference_high": high[0] if high is not None and high[1] == unit else None,
        }
        if any(value is not None for value in bounds.values()):
            return bounds
    return {"reference_low": None, "reference_high": None}


def _interpretation(model: Any) -> str:
    """The laboratory's own flag (HL7 v3 ObservationInterpretation): N is normal, a high, low or abnormal flag is
    abnormal, anything else says nothing."""
    concepts = getattr(model, "interpretation", None) or []
    codes = _codes(concepts[0], INTERPRETATION_SYSTEMS) if concepts else []
    if not codes:
        return ""
    if codes[0] == "N":
        return "normal"
    return "abnormal" if codes[0] in ABNORMAL_FLAGS else ""


def _observation_date(model: Observation, default: dt.date | None = None) -> dt.date | None:
    period_start = model.effectivePeriod.start if model.effectivePeriod else None
    for value in (model.effectiveDateTime, period_start, model.effectiveInstant, model.issued):
        if (date := _full_date(value)) is not None:
            return date
    return default


def _variant(model: Observation, on: dt.date, ref: str) -> VariantResult | None:
    gene, vaf = "", None
    for component in model.component or []:
        codes = _codes(component.code, frozenset({LOINC}))
        if GENE_STUDIED in codes and component.valueCodeableConcept is not None:
            concept = component.valueCodeableConcept
            coding = (concept.coding or [None])[0]
            gene = str((coding and (coding.display or coding.code)) or concept.text or "")
        elif VARIANT_ALLELE_FREQUENCY in codes and (number := _number(component.valueQuantity)) is not None:
            value, unit = number
            vaf = value if unit == "%" else value * 100
    if not gene or vaf is None:
        return None
    return VariantResult(gene.strip(), vaf, on, ref)


def _observation(model: Observation, ref: str, out: ClinicalParse, default_date: dt.date | None = None) -> None:
    if str(model.status) not in RESULT_STATUSES:
        out.ignore("Observation", ref, f"status {model.status} is not a result to act on")
        return
    on = _observation_date(model, default_date)
    if on is None:
        out.ignore("Observation", ref, "no full effective date")
        return
    loinc = _codes(model.code, frozenset({LOINC}))
    if VARIANT_ASSESSMENT in loinc:
        variant = _variant(model, on, ref)
        if variant is None:
            out.ignore("Observation", ref, "variant without a gene studied and an allele frequency")
        else:
            out.variants.append(variant)
        return
    found = 0
    number = _number(model.valueQuantity)
    if loinc and number is not None:
        bounds = _reference_range(model, number[1])
        out.labs.append(
            LabResult(loinc[0], number[0], number[1], on, ref, **bounds, interpretation=_interpretation(model))
        )
        found += 1
    for component in model.component or []:
        codes = _codes(component.code, frozenset({LOINC}))
        value = _number(component.valueQuantity)
        if codes and value is not None:
            bounds = _reference_range(component, value[1])
            part = f"{ref}#{codes[0]}"
            out.labs.append(
                LabResult(codes[0], value[0], value[1], on, part, **bounds, interpretation=_interpretation(component))
            )
            found += 1
    if not found:
        out.ignore("Observation", ref, "no LOINC code with a numeric value")


def _condition(model: Condition, ref: str, out: ClinicalParse) -> None:
    verification = _codes(model.verificationStatus, frozenset({VERIFICATION_STATUS}))
    if DISCARDED_VERIFICATION & set(verification):
        out.ignore("Condition", ref, f"verification status {verification[0]}")
        return
    icd10, snomed = _codes(model.code, ICD10_SYSTEMS), _codes(model.code, frozenset({SNOMED}))
    if not (icd10 or snomed):
        out.ignore("Condition", ref, "no ICD-10 or SNOMED CT code")
        return
    period_start = model.onsetPeriod.start if model.onsetPeriod else None
    onset = next(
        (d for d in map(_full_date, (model.onsetDateTime, period_start, model.recordedDate)) if d is not None), None
    )
    system, code = ("icd10", icd10[0]) if icd10 else ("snomed", snomed[0])
    out.diagnoses.append(Diagnosis(system, code, onset, ref))


def _report(model: DiagnosticReport, ref: str, out: ClinicalParse) -> None:
    if str(model.status) not in RESULT_STATUSES:
        out.ignore("DiagnosticReport", ref, f"status {model.status} is not a result to act on")
        return
    period_start = model.effectivePeriod.start if model.effectivePeriod else None
    on = next((d for d in map(_full_date, (model.effectiveDateTime, period_start, model.issued)) if d), None)
    contained = [r for r in model.contained or [] if r.get_resource_type() == "Observation"]
    if not contained:
        out.ignore("DiagnosticReport", ref, "no contained Observation (referenced results are read on their own)")
    for observation in contained:
        _observation(observation, f"{ref}#{observation.id}", out, default_date=on)


# --------------------------------------------------------------------------------------------- plain Observations
#: A laboratory result in the plain shape (see the module's docstring and ``plain``), read without full validation.
plain_observation = plain.resource(
    "Observation",
    {
        "status": plain.code,
        "category": plain.many(plain.concept),
        "code": plain.concept,
        "subject": plain.reference,
        "encounter": plain.reference,
        "effectiveDateTime": plain.instant,
        "issued": plain.instant,
        "valueQuantity": plain.quantity,
        "referenceRange": plain.many(plain.element({"low": plain.quantity, "high": plain.quantity})),
        "interpretation": plain.many(plain.concept),
    },
    ("status", "code"),
)


def clinical_records(resources: Iterable[Mapping[str, Any]]) -> ClinicalParse:
    """The lab results, diagnoses and variants in one patient's FHIR resources (Bundles are unwrapped)."""
    out = ClinicalParse()
    handlers = {"Observation": _observation, "Condition": _condition, "DiagnosticReport": _report}
    for resource in _resources(resources):
        resource_type = str(resource.get("resourceType") or "")
        ref = f"{resource_type}/{resource.get('id') or '?'}"
        if resource_type in RECONCILED_TYPES:
            continue
        if resource_type not in handlers:
            out.ignore(resource_type or "(none)", ref, "not a result or diagnosis")
            continue
        plain = plain_observation(resource) if resource_type == "Observation" else None
        if plain is not None:
            _observation(plain, ref, out)
            continue
        try:
            model = MODELS[resource_type].model_validate(resource)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
            out.ignore(resource_type, ref, f"not valid FHIR R4 ({where or 'structure'})")
            continue
        handlers[resource_type](model, ref, out)
    return out
