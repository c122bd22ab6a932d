"""Plain, validated records produced by the EHR parsers (FHIR Bundle, Bulk NDJSON, CSV).

Pure Python: no Django, no database. The Django import layer turns these into model rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SEXES = ("female", "male", "other", "unknown")


def latest_infusion(today: dt.date) -> dt.date:
    """The last plausible infusion date: one year after ``today`` (allows for clocks and time zones)."""
    try:
        return today.replace(year=today.year + 1)
    except ValueError:  # 29 February
        return today.replace(year=today.year + 1, day=28)


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """One patient as found in the source. ``source_id`` is the resource id (or the fullUrl without one).

    ``source`` is the system the resource says it comes from (its entry's absolute fullUrl base, else its
    ``meta.source``), or "" when it does not say: the importer then takes the sender's declared source. A resource
    id is only unique within its source, so the two together are its identity.
    """

    source_id: str
    identifier_system: str | None
    mrn: str | None
    given_name: str
    family_name: str
    birth_date: dt.date | None
    sex: str  # female | male | other | unknown
    email: str
    phone: str
    preferred_language: str  # "en", "es", ... (primary BCP-47 subtag), default "en"
    deceased: bool
    deceased_date: dt.date | None
    source: str = ""
    line: int | None = None
    entry: int | None = None
    #: How the patient may be reached, where the source says (CSV columns); None leaves the stored value.
    sms_consent: bool | None = None
    preferred_channel: str | None = None


@dataclass(frozen=True, slots=True)
class InfusionRecord:
    """A CAR-T infusion: a completed administration carrying a CAR-T administration or product code."""

    source_id: str
    resource_type: str  # Procedure | MedicationAdministration | MedicationRequest | csv
    patient_ref: str  # the patient's source_id once "Patient/x", urn:uuid and absolute references are resolved
    product_code: str | None  # product slug, or None when only a generic CAR-T administration code is present
    matched_code: tuple[str, str]  # (system, code) that made it a CAR-T infusion
    infusion_date: dt.date
    lot_number: str
    patient_source: str = ""  # the source of the Patient referred to, as PatientRecord.source
    line: int | None = None
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class RiskFlagRecord:
    """A risk factor of the patient's CAR-T infusions found in the source (an NGS finding, an EBV result, a prior
    autologous transplant, a cytopenia diagnosis; a CSV column), with its date and where it came from.

    ``code`` is a risk flag code (``engine.RISK_FLAGS``); ``findings`` are (gene, VAF in percent or None) pairs;
    ``matched_code`` is the (system, code) that made it a flag (("csv", column) for the CSV).
    """

    source_id: str
    resource_type: str  # Observation | Condition | Procedure | csv
    patient_ref: str
    code: str
    present: bool
    observed_on: dt.date
    matched_code: tuple[str, str]
    detail: str = ""
    findings: tuple[tuple[str, float | None], ...] = ()
    patient_source: str = ""  # the source of the Patient referred to, as for an InfusionRecord
    line: int | None = None
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class ClinicalResource:
    """A blood result, a diagnosis or an NGS report (Observation, Condition, DiagnosticReport), or an Encounter or
    Appointment, of a patient, kept as sent: the second-cancer signals (``imports.fhir.clinical``) and the visit
    reconciliation (``care.reconcile``) read it once the import knows the patient. ``source`` is the system the
    resource itself says it comes from (as ``PatientRecord.source``), "" when it does not say."""

    resource_type: str
    source_id: str
    patient_ref: str
    patient_source: str
    resource: Mapping[str, Any]
    line: int | None = None
    entry: int | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A resource deliberately not imported, with the reason (counted in the import summary)."""

    resource_type: str
    source_id: str
    reason: str
    line: int | None = None
    entry: int | None = None


@dataclass(frozen=True, slots=True)
class ImportIssue:
    """A problem with one entry, line or row.

    ``field`` is a FHIRPath relative to the resource ("performedDateTime", "identifier[0].system"), an
    absolute path when it starts with "Bundle" ("Bundle.type", "Bundle.entry[2].request"), a CSV column name,
    or "" when the problem concerns the whole line. ``code`` is the OperationOutcome issue type.
    """

    entry: int | None
    line: int | None
    field: str
    message: str
    code: str = "invalid"

    def expression(self) -> str | None:
        """The FHIRPath naming the element, e.g. ``Bundle.entry[3].resource.performedDateTime``."""
        if self.field.startswith("Bundle"):
            return self.field
        if self.entry is not None:
            base = f"Bundle.entry[{self.entry}].resource"
            return f"{base}.{self.field}" if self.field else base
        return self.field or None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        expression = self.expression()
        if expression:
            where.append(expression)
        return f"{', '.join(where) or 'input'}: {self.message}"


class FhirImportError(Exception):
    """The input as a whole was refused; ``issues`` lists every problem found (not only the first)."""

    def __init__(self, issues: list[ImportIssue]):
        self.issues = list(issues)
        shown = "; ".join(str(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(f"{len(self.issues)} problem(s): {shown}{more}")

    def to_operation_outcome(self) -> dict:
        """A FHIR R4 OperationOutcome (JSON dict) with one error issue per problem."""
        issues = []
        for issue in self.issues:
            item: dict = {"severity": "error", "code": issue.code}
            diagnostics = issue.message if issue.line is None else f"line {issue.line}: {issue.message}"
            item["diagnostics"] = diagnostics
            expression = issue.expression()
            if expression:
                item["expression"] = [expression]
            issues.append(item)
        return {"resourceType": "OperationOutcome", "issue": issues}


@dataclass(slots=True)
class ParseResult:
    """Everything a Bundle yielded. ``issues`` is empty unless the Bundle was parsed with ``atomic=False``."""

    patients: list[PatientRecord] = field(default_factory=list)
    infusions: list[InfusionRecord] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    issues: list[ImportIssue] = field(default_factory=list)
    risk_flags: list[RiskFlagRecord] = field(default_factory=list)
    clinical: list[ClinicalResource] = field(default_factory=list)

    def add(
        self, item: PatientRecord | InfusionRecord | RiskFlagRecord | ClinicalResource | Ignored | ImportIssue
    ) -> None:
        if isinstance(item, PatientRecord):
            self.patients.append(item)
        elif isinstance(item, InfusionRecord):
            self.infusions.append(item)
        elif isinstance(item, RiskFlagRecord):
            self.risk_flags.append(item)
        elif isinstance(item, ClinicalResource):
            self.clinical.append(item)
        elif isinstance(item, Ignored):
            self.ignored.append(item)
        else:
            self.issues.append(item)
