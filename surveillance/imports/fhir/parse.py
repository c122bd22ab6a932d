"""Parse FHIR R4 input (a Bundle, or Bulk Data NDJSON) into plain records.

Validation is fhir.resources' (pydantic) models for FHIR R4B (4.3.0), the package's closest release to
R4 4.0.1: Patient, Procedure, MedicationAdministration, MedicationRequest, Medication, Observation, Condition and
the Bundle shell have the same JSON structure in R4 and R4B. Only the resource types this module imports (and
Medication, read to resolve references) are validated, and Observations and Conditions only when coded as a risk
flag (``risk_codes``); other resources are counted as ignored without being validated, so R4-only resource types
that R4B dropped, or an unrelated malformed lab result, cannot fail an import. A Patient, Procedure or
MedicationAdministration in a plain shape, as most of an export's are, is read without the models to the values
they give (``plain``): validating them cost more than the rest of their import.

What the library does not check and this module does, because the records depend on it: the status codes it
acts on, Patient.gender (the library accepts any string), partial dates (the library returns "2013-04" as a
string), dates out of range, and references.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from pydantic import ValidationError

from surveillance.imports.fhir import risk_codes
from surveillance.imports.fhir.codes import CarTCodeIndex
from surveillance.imports.fhir.plain import PLAIN_READERS
from surveillance.imports.fhir.records import (
    SEXES,
    ClinicalResource,
    FhirImportError,
    Ignored,
    ImportIssue,
    InfusionRecord,
    ParseResult,
    PatientRecord,
    RiskFlagRecord,
    latest_infusion,
)
from surveillance.scheduling.engine import EARLIEST_INFUSION

FHIR_MODULE = "fhir.resources.R4B"
MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Procedure": Procedure,
    "MedicationAdministration": MedicationAdministration,
    "MedicationRequest": MedicationRequest,
    "Medication": Medication,
    "Observation": Observation,
    "Condition": Condition,
}
INFUSION_TYPES = ("Procedure", "MedicationAdministration", "MedicationRequest")
#: Read only when coded as a risk flag (``risk_codes.may_carry_flag``); any other is ignored without validation.
FLAG_TYPES = ("Observation", "Condition")
OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
#: Passed on as sent (``ClinicalResource``) when not read as a risk flag: the second-cancer signals read the results
#: and diagnoses, the visit reconciliation the results, encounters and appointments.
CLINICAL_TYPES = ("Observation", "Condition", "DiagnosticReport", "Encounter", "Appointment")

ACCEPTED_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset"})
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_LINE_CHARS = 16 * 1024 * 1024
MAX_ID_CHARS = 64  # FHIR's id type: [A-Za-z0-9\-\.]{1,64}
ID_RULE = f"not a FHIR id: 1 to {MAX_ID_CHARS} letters, digits, '-' or '.'"

ANIMAL_EXTENSION = "http://hl7.org/fhir/StructureDefinition/patient-animal"
IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
ORDER_INTENTS = frozenset({"order", "original-order", "reflex-order", "filler-order", "instance-order"})

# Ignored reasons that tests and the import summary count on.
NOT_SUPPORTED = "not a supported resource type"
NOT_CAR_T = "not a CAR-T code"
NO_CODE = "no code"
MEDICATION_ONLY = "Medication: read only to resolve medication references"

_NAME_RANK = {"official": 0, "usual": 1, None: 2, "temp": 3, "nickname": 4, "anonymous": 5, "old": 6, "maiden": 7}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")  # as the CSV import checks it
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?![A-Za-z])")
_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_ABSOLUTE_URL = re.compile(r"(?:https?://[^/\s]+/\S*|urn:(?:uuid|oid):\S+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Problem:
    field: str
    message: str
    code: str = "invalid"


@dataclass(frozen=True, slots=True)
class _Med:
    """A Medication as far as infusions care: its code and the lot of its (first) batch."""

    code: Any
    lot_number: str


Outcome = PatientRecord | InfusionRecord | RiskFlagRecord | Ignored | list[_Problem]


# --------------------------------------------------------------------------------------------- validation
def _path(loc: Iterable[Any]) -> str:
    """A pydantic error location as a FHIRPath: ('identifier', 0, 'system') -> 'identifier[0].system'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        part = str(part)
        if "[" in part or "(" in part or " " in part:  # a validator's tag, not an element
            continue
        if part == "resource_type":
            part = "resourceType"
        text = f"{text}.{part}" if text else part
    return text


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type")
    if kind == "missing":
        return "required element is missing"
    if kind == "extra_forbidden":
        return "unknown element (not in FHIR R4)"
    if kind == "json_invalid":
        return "expected a JSON object"
    if kind == "string_pattern_mismatch" and tuple(error.get("loc", ())) == ("id",):
        return ID_RULE
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ").split("\n")[0].strip()


def _read(resource: dict) -> bool:
    """Whether a resource is validated and read: a supported type, and an Observation or Condition only when it
    is coded as a risk flag."""
    resource_type = resource.get("resourceType")
    return resource_type in MODELS and (resource_type not in FLAG_TYPES or risk_codes.may_carry_flag(resource))


def _validate(resource: dict) -> tuple[Any, list[_Problem]]:
    """The fhir.resources model for a supported resource, or the problems (without echoing values); a resource in
    a plain shape (``PLAIN_READERS``) is read without the model, to the same values."""
    plain_reader = PLAIN_READERS.get(resource["resourceType"])
    read = plain_reader(resource) if plain_reader is not None else None
    if read is not None:
        return read, []
    model_class = MODELS[resource["resourceType"]]
    try:
        model = model_class.model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        return None, [_Problem(_path(error["loc"]), _message(error), "structure") for error in errors]
    if model.id is not None and len(model.id) > MAX_ID_CHARS:  # the library checks the characters, not the length
        return None, [_Problem("id", ID_RULE, "value")]
    return model, []


# --------------------------------------------------------------------------------------------- values
def _full_date(value: Any) -> dt.date | None:
    """A calendar date from a FHIR date/dateTime (the date as written, in its own offset); None if partial."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return None


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


# --------------------------------------------------------------------------------------------- references
def _base(url: str) -> str:
    """The server base of an absolute RESTful URL ("https://a.example/fhir" of ".../fhir/Patient/1"), else ""."""
    if not url.lower().startswith(("http://", "https://")):
        return ""
    match = _TYPE_ID.search(url)
    return url[: match.start()] if match else ""


def _meta_source(model: Any) -> str:
    """``meta.source`` without its fragment: servers such as HAPI append "#<request id>", new at every write."""
    meta = getattr(model, "meta", None)
    return _text(meta.source if meta else None).split("#", 1)[0]


def _patient_references(resource: dict) -> list[str]:
    """Where the resource may name its Patient: its ``subject``, else (an Appointment) its participants' actors."""
    subject = resource.get("subject")
    if isinstance(subject, dict):
        return [subject["reference"]] if isinstance(subject.get("reference"), str) else []
    actors = [p.get("actor") for p in resource.get("participant") or [] if isinstance(p, dict)]
    return [a["reference"] for a in actors if isinstance(a, dict) and isinstance(a.get("reference"), str)]


def _clinical(resource: dict, source: str, context: _Context) -> ClinicalResource | Ignored:
    """A result, diagnosis, encounter or appointment about a Patient, kept as sent; one about no Patient is
    ignored."""
    resource_type, source_id = resource["resourceType"], _text(resource.get("id"))
    found = ((ref, context.patient(ref)) for ref in _patient_references(resource) if ref)
    reference, patient_ref = next(((ref, pid) for ref, pid in found if isinstance(pid, str)), (None, None))
    if reference is None or patient_ref is None:
        return Ignored(resource_type, source_id, "its subject is not a Patient of this export")
    own_source = source or _text((resource.get("meta") or {}).get("source")).split("#", 1)[0]
    patient_source = context.patient_source(reference, patient_ref, own_source)
    return ClinicalResource(resource_type, source_id, patient_ref, patient_source, resource, source=own_source)


def _subject(model: Any, context: _Context) -> tuple[str, str | _Problem]:
    """The resource's subject reference and the Patient it names (its source id), or why it names none."""
    subject = _text(model.subject.reference if model.subject else None)
    if not subject:
        return subject, _Problem("subject.reference", "the subject must be a literal reference to a Patient")
    return subject, context.patient(subject)


def _type_and_id(reference: str) -> tuple[str, str] | None:
    """("Patient", "123") from "Patient/123", "http://host/fhir/Patient/123" or ".../Patient/123/_history/2"."""
    match = _TYPE_ID.search(reference)
    return (match.group(1), match.group(2)) if match else None


def _contained(model: Any, reference: str, resource_type: str) -> Any | None:
    wanted = reference[1:]
    for resource in model.contained or ():
        if resource.get_resource_type() == resource_type and resource.id == wanted:
            return resource
    return None


def _med_of(medication: Any) -> _Med:
    batch = getattr(medication, "batch", None)
    return _Med(code=medication.code, lot_number=_text(getattr(batch, "lotNumber", None)))


class _Context:
    """How references are resolved: inside a Bundle, or in a stream of NDJSON lines."""

    def patient(self, reference: str) -> str | _Problem:
        raise NotImplementedError

    def patient_source(self, reference: str, patient_id: str, own_source: str) -> str:
        """Where the Patient referred to comes from: an absolute reference says it; a relative one is resolved
        against the referring resource's own server (FHIR's rule), unless the Bundle holds that Patient."""
        return _base(reference) or own_source

    def medication(self, reference: str) -> _Med | str | None:
        """The Medication, a reason it cannot be resolved (str), or None when the reference is not one."""
        raise NotImplementedError


def _patient_reference_problem(reference: str) -> _Problem | None:
    if reference.startswith("#"):
        return _Problem("subject.reference", "a contained Patient cannot be the subject of an infusion")
    if "?" in reference:
        return _Problem("subject.reference", "conditional references are not supported", "not-supported")
    return None


class _BundleContext(_Context):
    def __init__(self) -> None:
        self.by_url: dict[str, tuple[str, str]] = {}  # fullUrl -> (resourceType, source_id)
        self.by_type_id: dict[str, tuple[str, str]] = {}  # "Type/id" -> (resourceType, source_id)
        self.medications: dict[str, _Med] = {}  # fullUrl and "Medication/id" -> _Med
        self.patient_sources: dict[str, str] = {}  # a Patient entry's source_id -> its source

    def patient_source(self, reference: str, patient_id: str, own_source: str) -> str:
        if patient_id in self.patient_sources:
            return self.patient_sources[patient_id]
        return super().patient_source(reference, patient_id, own_source)

    def register(self, full_url: str | None, resource_type: str, resource_id: str | None, source_id: str) -> None:
        if full_url:
            self.by_url[full_url] = (resource_type, source_id)
        if resource_id:
            self.by_type_id[f"{resource_type}/{resource_id}"] = (resource_type, source_id)
        elif full_url and (type_id := _type_and_id(full_url)) and type_id[0] == resource_type:
            self.by_type_id.setdefault("/".join(type_id), (resource_type, source_id))

    def patient(self, reference: str) -> str | _Problem:
        problem = _patient_reference_problem(reference)
        if problem:
            return problem
        target = self.by_url.get(reference)
        if target is None and reference.startswith("urn:"):
            return _Problem("subject.reference", f"{reference} matches no entry's fullUrl in the Bundle")
        if target is None:
            type_id = _type_and_id(reference)
            if type_id is None:
                return _Problem("subject.reference", "not a Patient reference")
            target = self.by_type_id.get("/".join(type_id), (type_id[0], type_id[1]))
        if target[0] != "Patient":
            return _Problem("subject.reference", f"the subject is a {target[0]}, not a Patient")
        return target[1]

    def medication(self, reference: str) -> _Med | str | None:
        if reference in self.medications:
            return self.medications[reference]
        type_id = _type_and_id(reference)
        if type_id is not None and type_id[0] == "Medication":
            return self.medications.get("/".join(type_id)) or f"medicationReference {reference} is not in the Bundle"
        return f"medicationReference {reference} is not a Medication in the Bundle"


class _StreamContext(_Context):
    def __init__(self, medications: MutableMapping[str, _Med]) -> None:
        self.medications = medications  # id -> _Med, only CAR-T coded Medications (bounded by the catalogue)

    def patient(self, reference: str) -> str | _Problem:
        problem = _patient_reference_problem(reference)
        if problem:
            return problem
        if reference.startswith("urn:"):
            return _Problem("subject.reference", "urn: references resolve only inside a Bundle")
        type_id = _type_and_id(reference)
        if type_id is None:
            return _Problem("subject.reference", "not a Patient reference")
        if type_id[0] != "Patient":
            return _Problem("subject.reference", f"the subject is a {type_id[0]}, not a Patient")
        return type_id[1]

    def medication(self, reference: str) -> _Med | str | None:
        type_id = _type_and_id(reference)
        if type_id is None or type_id[0] != "Medication":
            return f"medicationReference {reference} is not a Medication reference"
        found = self.medications.get(type_id[1])
        return found or f"medicationReference {reference}: no CAR-T coded Medication with that id read before"


# --------------------------------------------------------------------------------------------- Patient
def _identifier_type_codes(identifier: Any) -> set[str]:
    concept = identifier.type
    return {
        coding.code for coding in (concept.coding if concept else None) or () if coding.system == IDENTIFIER_TYPE_SYSTEM
    }


def _mrn(identifiers: Iterable[Any] | None) -> tuple[str | None, str | None]:
    """(system, value) of the patient's MRN, or (None, None).

    The identifier typed MR (v2-0203); else the first usual/official identifier that is not typed as something
    else (an SSN or a passport is never an MRN); else the first such identifier without a use. "old" ones never.
    """
    usable = [identifier for identifier in identifiers or () if identifier.value and identifier.use != "old"]
    for identifier in usable:
        if "MR" in _identifier_type_codes(identifier):
            return identifier.system, identifier.value.strip()
    untyped = [identifier for identifier in usable if not _identifier_type_codes(identifier)]
    for identifier in untyped:
        if identifier.use in ("usual", "official"):
            return identifier.system, identifier.value.strip()
    for identifier in untyped:
        if identifier.use is None:
            return identifier.system, identifier.value.strip()
    return None, None


def _name(names: Iterable[Any] | None) -> tuple[str, str]:
    ranked = sorted(names or (), key=lambda name: _NAME_RANK.get(name.use, 2))
    for name in ranked:
        given = " ".join(part.strip() for part in name.given or () if part and part.strip())
        family = _text(name.family)
        if given or family:
            return given, family
    return "", ""


def _telecom(points: Iterable[Any] | None, systems: tuple[str, ...], uses: tuple[str, ...]) -> str:
    candidates = [
        point
        for point in points or ()
        if point.system in systems and point.value and point.value.strip() and point.use != "old"
    ]
    if not candidates:
        return ""

    def preference(point: Any) -> tuple[int, int]:
        use = uses.index(point.use) if point.use in uses else len(uses)
        return (point.rank if point.rank is not None else 2**31, use)

    return min(candidates, key=preference).value.strip()


def _language(communications: Iterable[Any] | None) -> str:
    ordered = sorted(communications or (), key=lambda item: not item.preferred)
    for communication in ordered:
        concept = communication.language
        candidates = [coding.code for coding in concept.coding or () if coding.code] if concept else []
        for code in candidates:
            match = _LANGUAGE.match(code.strip())
            if match:
                return match.group(0).lower()
    return "en"


def _patient(model: Any, source_id: str, source: str, today: dt.date) -> PatientRecord | list[_Problem]:
    problems: list[_Problem] = []
    if any(extension.url == ANIMAL_EXTENSION for extension in model.extension or ()):
        problems.append(_Problem("extension", "patient-animal extension: not a human patient", "business-rule"))
    sex = model.gender or "unknown"
    if sex not in SEXES:
        problems.append(_Problem("gender", "not an administrative-gender code (male, female, other, unknown)"))
    birth_date = _full_date(model.birthDate)  # a partial birth date ("1980") is kept as unknown
    if birth_date is not None and birth_date > today:
        problems.append(_Problem("birthDate", "birth date is in the future", "value"))
    deceased = bool(model.deceasedBoolean) or model.deceasedDateTime is not None
    deceased_date = _full_date(model.deceasedDateTime)
    if deceased_date is not None and deceased_date > today:
        problems.append(_Problem("deceasedDateTime", "date of death is in the future", "value"))
    email = _telecom(model.telecom, ("email",), ("home", "mobile", "work"))
    if email and not _EMAIL.fullmatch(email):  # stored, it would stop every reminder at send time
        problems.append(_Problem("telecom", "the email address is not a valid address", "value"))
    if problems:
        return problems
    system, mrn = _mrn(model.identifier)
    given, family = _name(model.name)
    return PatientRecord(
        source_id=source_id,
        identifier_system=system,
        mrn=mrn,
        given_name=given,
        family_name=family,
        birth_date=birth_date,
        sex=sex,
        email=email,
        phone=_telecom(model.telecom, ("phone", "sms"), ("mobile", "home", "work")),
        preferred_language=_language(model.communication),
        deceased=deceased,
        deceased_date=deceased_date,
        source=source,
    )


# --------------------------------------------------------------------------------------------- infusions
def _medication(model: Any, context: _Context) -> tuple[list[Any], _Med | None, Ignored | _Problem | None]:
    """The medication's CodeableConcepts and Medication, or why they are unavailable."""
    if model.medicationCodeableConcept is not None:
        return [model.medicationCodeableConcept], None, None
    reference = _text(model.medicationReference.reference if model.medicationReference else None)
    if not reference:
        return [], None, _Problem("medicationReference.reference", "the medication has no literal reference")
    if reference.startswith("#"):
        contained = _contained(model, reference, "Medication")
        if contained is None:
            return [], None, _Problem("medicationReference.reference", f"no contained Medication {reference}")
        med = _med_of(contained)
        return [med.code], med, None
    found = context.medication(reference)
    if isinstance(found, _Med):
        return [found.code], found, None
    return [], None, Ignored(model.get_resource_type(), _text(model.id), str(found))


def _infusion_date(model: Any, resource_type: str) -> tuple[Any, str]:
    """The raw date value and the element it came from."""
    if resource_type == "Procedure":
        if model.performedDateTime is not None:
            return model.performedDateTime, "performedDateTime"
        if model.performedPeriod is not None and model.performedPeriod.start is not None:
            return model.performedPeriod.start, "performedPeriod.start"
        return None, "performed[x]"
    if resource_type == "MedicationAdministration":
        if model.effectiveDateTime is not None:
            return model.effectiveDateTime, "effectiveDateTime"
        if model.effectivePeriod is not None and model.effectivePeriod.start is not None:
            return model.effectivePeriod.start, "effectivePeriod.start"
        return None, "effective[x]"
    return model.authoredOn, "authoredOn"


class _Reader:
    def __init__(self, codes: CarTCodeIndex, today: dt.date):
        self.codes = codes
        self.today = today
        self.latest = latest_infusion(today)

    def resource(self, model: Any, resource_type: str, source_id: str, source: str, context: _Context) -> Outcome:
        """``source``: where the resource says it comes from (``PatientRecord.source``)."""
        if resource_type == "Patient":
            return _patient(model, source_id, source, self.today)
        if resource_type == "Medication":
            return Ignored("Medication", source_id, MEDICATION_ONLY)
        if resource_type in FLAG_TYPES:
            return self.risk_flag(model, resource_type, source_id, source, context)
        return self.infusion(model, resource_type, source_id, source, context)

    def infusion(self, model: Any, resource_type: str, source_id: str, source: str, context: _Context) -> Outcome:
        status = model.status
        if status != "completed":
            return Ignored(
                resource_type, source_id, f"status {status}{self._car_t_note(model, resource_type, context)}"
            )
        if resource_type == "MedicationRequest":
            if model.intent not in ORDER_INTENTS:
                return Ignored(resource_type, source_id, f"MedicationRequest intent {model.intent} is not an order")
            if model.doNotPerform:
                return Ignored(resource_type, source_id, "MedicationRequest doNotPerform")

        med: _Med | None = None
        if resource_type == "Procedure":
            if model.code is None:
                return Ignored(resource_type, source_id, NO_CODE)
            concepts = [model.code, *(model.usedCode or ())]
            code_field = "code"
        else:
            concepts, med, unavailable = _medication(model, context)
            if isinstance(unavailable, Ignored):
                return replace(unavailable, source_id=source_id)
            if unavailable is not None:
                return [unavailable]
            code_field = "medicationCodeableConcept" if model.medicationCodeableConcept else "medicationReference"

        matched = self.codes.match(concepts)
        if matched is None:
            if resource_type == "Procedure":
                hct = _first_code(model.code.coding, risk_codes.procedure_flag)
                if hct is not None:
                    raw_date, date_field = _infusion_date(model, resource_type)
                    return self._flag(
                        model,
                        resource_type,
                        source_id,
                        source,
                        context,
                        risk_codes.PRIOR_AUTO_HCT,
                        hct,
                        raw_date,
                        date_field,
                    )
            steps = self.codes.codes_in(concepts)
            if steps:
                step = steps[0]
                return Ignored(resource_type, source_id, f"CAR-T process step {step.code}, not an infusion")
            return Ignored(resource_type, source_id, NOT_CAR_T)

        problems: list[_Problem] = []
        products = self.codes.products_in(concepts)
        if len(products) > 1:
            problems.append(_Problem(code_field, f"codes name more than one CAR-T product: {sorted(products)}"))

        raw_date, date_field = _infusion_date(model, resource_type)
        infusion_date = _full_date(raw_date)
        if raw_date is None:
            problems.append(_Problem(date_field, "a CAR-T infusion needs its date", "required"))
        elif infusion_date is None:
            problems.append(_Problem(date_field, "the infusion date must give year, month and day", "value"))
        elif not EARLIEST_INFUSION <= infusion_date <= self.latest:
            problems.append(
                _Problem(date_field, f"infusion date outside {EARLIEST_INFUSION} .. {self.latest}", "value")
            )

        subject, patient_ref = _subject(model, context)
        if isinstance(patient_ref, _Problem):
            problems.append(patient_ref)
        if problems:
            return problems
        assert infusion_date is not None and isinstance(patient_ref, str)
        return InfusionRecord(
            source_id=source_id,
            resource_type=resource_type,
            patient_ref=patient_ref,
            product_code=matched[0],
            matched_code=matched[1],
            infusion_date=infusion_date,
            lot_number=med.lot_number if med else "",
            patient_source=context.patient_source(subject, patient_ref, source),
        )

    def risk_flag(self, model: Any, resource_type: str, source_id: str, source: str, context: _Context) -> Outcome:
        """An Observation or Condition coded as a risk flag (``risk_codes``): the flag, present or absent."""
        codings = model.code.coding if model.code else None
        if resource_type == "Observation":
            if model.status not in OBSERVATION_STATUSES:
                return Ignored(resource_type, source_id, f"status {model.status}")
            found = _first_code(codings, risk_codes.observation_flag)
            raw_date, date_field = model.effectiveDateTime, "effectiveDateTime"
            if raw_date is None and model.effectivePeriod is not None:
                raw_date, date_field = model.effectivePeriod.start, "effectivePeriod.start"
            if raw_date is None:
                raw_date, date_field = model.issued, "issued"
        else:
            status = model.verificationStatus
            verification = next((c.code for c in status.coding or ()), None) if status else None
            if verification in ("entered-in-error", "refuted"):
                return Ignored(resource_type, source_id, f"verification {verification}")
            found = _first_code(codings, risk_codes.condition_flag)
            raw_date, date_field = model.onsetDateTime, "onsetDateTime"
            if raw_date is None:
                raw_date, date_field = model.recordedDate, "recordedDate"
        if found is None:  # may_carry_flag saw the code: only a malformed coding gets here
            return Ignored(resource_type, source_id, NO_CODE)
        flag = (
            risk_codes.observation_flag(*found) if resource_type == "Observation" else risk_codes.condition_flag(*found)
        )
        return self._flag(model, resource_type, source_id, source, context, flag, found, raw_date, date_field)

    def _flag(
        self,
        model: Any,
        resource_type: str,
        source_id: str,
        source: str,
        context: _Context,
        flag: str,
        matched: tuple[str, str],
        raw_date: Any,
        date_field: str,
    ) -> Outcome:
        problems: list[_Problem] = []
        observed_on = _full_date(raw_date)
        if raw_date is None:
            problems.append(_Problem(date_field, "a risk flag needs the date it was observed", "required"))
        elif observed_on is None:
            problems.append(_Problem(date_field, "the date must give year, month and day", "value"))
        elif not dt.date(1900, 1, 1) <= observed_on <= self.today:
            problems.append(_Problem(date_field, f"the date is outside 1900-01-01 .. {self.today}", "value"))
        subject, patient_ref = _subject(model, context)
        if isinstance(patient_ref, _Problem):
            problems.append(patient_ref)
        present, detail, findings = True, "", ()
        if resource_type == "Observation":
            read = _variant(model) if flag == risk_codes.CH else _ebv_result(model)
            if isinstance(read, str):
                return Ignored(resource_type, source_id, read)
            present, detail, findings = read
        if problems:
            return problems
        assert observed_on is not None and isinstance(patient_ref, str)
        return RiskFlagRecord(
            source_id=source_id,
            resource_type=resource_type,
            patient_ref=patient_ref,
            code=flag,
            present=present,
            observed_on=observed_on,
            matched_code=(_text(matched[0]), _text(matched[1])),
            detail=detail,
            findings=findings,
            patient_source=context.patient_source(subject, patient_ref, source),
        )

    def _car_t_note(self, model: Any, resource_type: str, context: _Context) -> str:
        """A note for a CAR-T coded resource set aside for its status, so the import summary shows it."""
        if resource_type == "Procedure":
            concepts = [model.code, *(model.usedCode or ())]
        else:
            concepts, _, unavailable = _medication(model, context)
            if unavailable is not None:
                return ""
        return " (CAR-T coded, not counted as an infusion)" if self.codes.match(concepts) else ""


# --------------------------------------------------------------------------------------------- Bundle
FlagReading = tuple[bool, str, tuple[tuple[str, float | None], ...]]


def _first_code(codings: Iterable[Any] | None, lookup: Callable[[Any, Any], str | None]) -> tuple[str, str] | None:
    """The first (system, code) of the codings that ``lookup`` recognises as a risk flag."""
    return next(((c.system, c.code) for c in codings or () if lookup(c.system, c.code)), None)


def _component(model: Any, loinc: str) -> Any | None:
    """The Observation's component coded with this LOINC code, if any."""
    return next(
        (
            part
            for part in model.component or ()
            if any(risk_codes.is_loinc(c.system) and c.code == loinc for c in part.code.coding or ())
        ),
        None,
    )


def _variant(model: Any) -> FlagReading | str:
    """A genetic variant assessment: (present, detail, findings), or why it does not count as CH."""
    gene_part = _component(model, risk_codes.GENE_STUDIED)
    concept = gene_part.valueCodeableConcept if gene_part is not None else None
    names = [_text(c.display) for c in (concept.coding or ())] + [_text(concept.text)] if concept else []
    gene = next((name.upper() for name in names if name.upper() in risk_codes.CH_GENES), None)
    if gene is None:
        return "variant in a gene that is not a CH gene of the reference"
    vaf: float | None = None
    vaf_part = _component(model, risk_codes.VARIANT_ALLELIC_FREQUENCY)
    if vaf_part is not None and vaf_part.valueQuantity is not None and vaf_part.valueQuantity.value is not None:
        value = float(vaf_part.valueQuantity.value)
        percent = _text(vaf_part.valueQuantity.unit) == "%" or _text(vaf_part.valueQuantity.code) == "%"
        vaf = round(value if percent else value * 100, 2)
    present = True
    if model.valueCodeableConcept is not None:
        answers = [risk_codes.answer_presence(c.system, c.code) for c in model.valueCodeableConcept.coding or ()]
        present = next((answer for answer in answers if answer is not None), True)
    if present and vaf is not None and vaf < risk_codes.CH_VAF_PERCENT:
        return f"VAF below {risk_codes.CH_VAF_PERCENT:g} %"
    detail = f"{gene} {vaf:g}%" if vaf is not None else gene
    return present, detail, ((gene, vaf),) if present else ()


def _ebv_result(model: Any) -> FlagReading | str:
    """An EBV result: positive, detected or a viral load above zero is present; the opposites are absent."""
    present: bool | None = None
    if model.valueCodeableConcept is not None:
        answers = [risk_codes.answer_presence(c.system, c.code) for c in model.valueCodeableConcept.coding or ()]
        present = next((answer for answer in answers if answer is not None), None)
    elif model.valueQuantity is not None and model.valueQuantity.value is not None:
        present = float(model.valueQuantity.value) > 0
    elif model.valueString is not None:
        present = {"positive": True, "detected": True, "negative": False, "not detected": False}.get(
            model.valueString.strip().lower()
        )
    if present is None:
        return "EBV result without a readable value"
    return present, "EBV positive" if present else "EBV negative", ()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_bundle(data: bytes | str | dict, max_bytes: int) -> dict:
    if isinstance(data, dict):
        return data
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise FhirImportError(
            [ImportIssue(None, None, "", f"the Bundle is {size} bytes, over {max_bytes}", "too-long")]
        )
    try:
        loaded = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FhirImportError([ImportIssue(None, None, "", f"not valid JSON: {exc}", "structure")]) from None
    if not isinstance(loaded, dict):
        raise FhirImportError([ImportIssue(None, None, "", "not a JSON object", "structure")])
    return loaded


def _request_type(url: str) -> str:
    head = url.split("?", 1)[0].strip("/").split("/", 1)[0]
    return head or "Bundle.entry"


def parse_bundle(
    data: bytes | str | dict,
    codes: CarTCodeIndex,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    today: dt.date | None = None,
    atomic: bool = True,
) -> ParseResult:
    """Parse a FHIR R4 Bundle (transaction, batch, collection or searchset).

    Atomic by default: if any entry is invalid, raise :class:`FhirImportError` listing every problem (entry
    index and element), and return nothing. With ``atomic=False`` the problems come back in
    ``ParseResult.issues`` and the entries that have them are left out.
    """
    today = today or dt.date.today()
    bundle = _load_bundle(data, max_bytes)
    if bundle.get("resourceType") != "Bundle":
        raise FhirImportError([ImportIssue(None, None, "resourceType", "expected a Bundle", "structure")])
    bundle_type = bundle.get("type")
    if bundle_type not in ACCEPTED_BUNDLE_TYPES:
        accepted = ", ".join(sorted(ACCEPTED_BUNDLE_TYPES))
        message = f"a Bundle of type {bundle_type} cannot be imported (accepted: {accepted})"
        raise FhirImportError([ImportIssue(None, None, "Bundle.type", message, "not-supported")])
    entries = bundle.get("entry")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise FhirImportError([ImportIssue(None, None, "Bundle.entry", "expected an array", "structure")])

    issues: list[ImportIssue] = []
    shell = {key: value for key, value in bundle.items() if key != "entry"}
    shell["entry"] = [
        {key: value for key, value in entry.items() if key != "resource"} if isinstance(entry, dict) else entry
        for entry in entries
    ]
    try:
        Bundle.model_validate(shell)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = error["loc"]
            index = loc[1] if len(loc) > 1 and loc[0] == "entry" and isinstance(loc[1], int) else None
            path = _path(loc)
            issues.append(
                ImportIssue(index, None, f"Bundle.{path}" if path else "Bundle", _message(error), "structure")
            )
    bad_entries = {issue.entry for issue in issues}

    reader = _Reader(codes, today)
    context = _BundleContext()
    result = ParseResult()
    pending: list[tuple[int, str, Any, str]] = []
    clinical: list[tuple[int, dict, str]] = []  # read once every Patient of the Bundle is known
    seen: dict[str, int] = {}

    def refuse(index: int, problems: list[_Problem]) -> None:
        issues.extend(ImportIssue(index, None, problem.field, problem.message, problem.code) for problem in problems)

    for index, entry in enumerate(entries):
        if index in bad_entries or not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(request.get("method") or "")
        full_url = entry.get("fullUrl") or None
        if resource is None or method in ("DELETE", "GET", "HEAD", "PATCH"):
            url = str(request.get("url") or full_url or "")
            reason = f"{method} entry has no resource to import" if method else "entry has no resource"
            if resource is not None:
                reason = f"{method} entry is not imported"
            result.ignored.append(Ignored(_request_type(url), url, reason, entry=index))
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            refuse(index, [_Problem("resourceType", "the resource has no resourceType", "structure")])
            continue
        resource_type = resource["resourceType"]
        resource_id = resource.get("id") if isinstance(resource.get("id"), str) else None
        source_id = resource_id or full_url or ""
        if (entry.get("search") or {}).get("mode") == "outcome":
            result.ignored.append(Ignored(resource_type, source_id, "search outcome", entry=index))
            continue
        if not _read(resource):
            if resource_type in CLINICAL_TYPES:
                clinical.append((index, resource, _base(full_url or "")))
            else:
                result.ignored.append(Ignored(resource_type, source_id, NOT_SUPPORTED, entry=index))
            continue
        model, problems = _validate(resource)
        if not source_id:
            problems.append(_Problem("id", "the entry has neither a resource id nor a fullUrl", "required"))
        if full_url and not _ABSOLUTE_URL.fullmatch(full_url):  # it would leave the resource without a source
            message = "the fullUrl must be absolute (https://server/Type/id, urn:uuid:... or urn:oid:...)"
            problems.append(_Problem(f"Bundle.entry[{index}].fullUrl", message))
        key = f"{resource_type}/{source_id}"
        if key in seen:
            problems.append(_Problem("id", f"the same {resource_type} is also entry {seen[key]}", "duplicate"))
        if problems:
            refuse(index, problems)
            continue
        seen[key] = index
        context.register(full_url, resource_type, resource_id, source_id)
        source = _base(full_url or "") or _meta_source(model)
        if resource_type == "Patient":
            context.patient_sources[source_id] = source
        if resource_type == "Medication":
            med = _med_of(model)
            for alias in (full_url, f"Medication/{resource_id}" if resource_id else None):
                if alias:
                    context.medications[alias] = med
        pending.append((index, resource_type, model, source_id, source))

    for index, resource_type, model, source_id, source in pending:
        outcome = reader.resource(model, resource_type, source_id, source, context)
        if isinstance(outcome, list):
            refuse(index, outcome)
        else:
            result.add(replace(outcome, entry=index))
    for index, resource, source in clinical:
        result.add(replace(_clinical(resource, source, context), entry=index))

    issues.sort(key=lambda issue: -1 if issue.entry is None else issue.entry)
    if issues and atomic:
        raise FhirImportError(issues)
    result.issues = issues
    result.ignored.sort(key=lambda item: -1 if item.entry is None else item.entry)
    return result


# --------------------------------------------------------------------------------------------- NDJSON
def parse_ndjson(
    lines: Iterable[bytes | str],
    codes: CarTCodeIndex,
    *,
    start_line: int = 1,
    today: dt.date | None = None,
    medications: MutableMapping[str, Any] | None = None,
) -> Iterator[tuple[int, PatientRecord | InfusionRecord | RiskFlagRecord | Ignored | ImportIssue]]:
    """Parse Bulk Data NDJSON lazily: one resource per line, one or more items yielded per line.

    A bad line yields an :class:`ImportIssue` with its line number and parsing goes on; blank lines are
    skipped. Memory stays constant: lines are read one at a time, nothing is kept but the CAR-T coded
    Medications (so that a later MedicationAdministration can reference one). Pass the same ``medications``
    dict to successive calls to resolve across files (read the Medication file first).
    """
    today = today or dt.date.today()
    reader = _Reader(codes, today)
    context = _StreamContext(medications if medications is not None else {})

    def issue(number: int, field: str, message: str, code: str = "invalid") -> tuple[int, ImportIssue]:
        return number, ImportIssue(None, number, field, message, code)

    for number, raw in enumerate(lines, start=start_line):
        if isinstance(raw, bytes | bytearray):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                yield issue(number, "", "not UTF-8 text", "structure")
                continue
        text = raw.strip().lstrip("\ufeff")
        if not text:
            continue
        if len(text) > MAX_LINE_CHARS:
            yield issue(number, "", f"the line is over {MAX_LINE_CHARS} characters", "too-long")
            continue
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            yield issue(number, "", f"not valid JSON: {exc}", "structure")
            continue
        if not isinstance(data, dict):
            yield issue(number, "", "the line is not a JSON object", "structure")
            continue
        resource_type = data.get("resourceType")
        if not isinstance(resource_type, str) or not resource_type:
            yield issue(number, "resourceType", "the resource has no resourceType", "structure")
            continue
        if not _read(data):
            if resource_type in CLINICAL_TYPES:
                yield number, replace(_clinical(data, "", context), line=number)
            else:
                yield number, Ignored(resource_type, _text(data.get("id")), NOT_SUPPORTED, line=number)
            continue
        model, problems = _validate(data)
        if model is not None and not model.id:
            problems.append(_Problem("id", "a resource in a bulk export needs an id", "required"))
        if problems:
            for problem in problems:
                yield issue(number, problem.field, problem.message, problem.code)
            continue
        if resource_type == "Medication":
            med = _med_of(model)
            if codes.codes_in([med.code]):
                context.medications[model.id] = med
        outcome = reader.resource(model, resource_type, model.id, _meta_source(model), context)
        if isinstance(outcome, list):
            for problem in outcome:
                yield issue(number, problem.field, problem.message, problem.code)
        else:
            yield number, replace(outcome, line=number)
