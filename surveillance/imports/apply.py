"""Apply parsed records to the database, one record at a time: patients (who they are is ``imports.identity``'s
decision), infusions (through ``care.infusions``, as every entry point), then the risk flags and the results and
diagnoses the export sent about them.

Plain functions of a record and an ``ApplyContext``, what the records of one import share, so that a test applies
one record without a batch: ``patient_apply(record, ApplyContext.for_import(centre))``. An NDJSON batch gives the
functions a context of its own that also carries what makes a stream of batches fast (``imports.batching``): the
batch's rows looked up at once (``BatchLookup``) and its new rows and plans put off to its end (``BatchWrites``).
Without them each record is looked up and written on its own, to the same outcome.

A record that cannot be applied raises ``RowProblem`` before writing anything; one the database refuses raises one
of ``REFUSED``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DataError, IntegrityError
from django.utils import timezone

from surveillance.care import contact_details, infusions, lifecycle, reasons, risk_flags
from surveillance.care.reconcile import PatientRecords, reconcile_from_ehr
from surveillance.care.results import lab_history
from surveillance.imports.fhir.clinical import clinical_records
from surveillance.imports.fhir.records import (
    ClinicalResource,
    Ignored,
    ImportIssue,
    InfusionRecord,
    PatientRecord,
    RiskFlagRecord,
)
from surveillance.imports.identity import Identity, SourceKey, patients_find, record_mrn
from surveillance.imports.lookup import BatchLookup
from surveillance.imports.report import ImportReport
from surveillance.models import CarTProduct, Infusion, Patient, PatientStatus, TreatmentCentre
from surveillance.scheduling.engine import EARLIEST_INFUSION
from surveillance.signals.review import ruleset_current, signals_record

if TYPE_CHECKING:  # the batching module builds on this one: it hands its writes in, never the other way round
    from surveillance.imports.batching import BatchWrites

logger = logging.getLogger("surveillance.imports.apply")

DEFAULT_SOURCE_SYSTEM = "ehr"
DECEASED_REASON = reasons.DECEASED_PER_EHR
UNKNOWN_PATIENT = "about a patient not followed here"
NO_INFUSION = "about a patient with no CAR-T infusion recorded"
PLAN_REASON = reasons.EHR_IMPORT

#: What the database (or a lifecycle rule) may refuse while a record is applied: the record is reported, not raised.
REFUSED = (IntegrityError, DataError, lifecycle.TransitionError)

#: How the report counts a phone number that was not stored because it is not a valid number.
PHONE_LEFT_OUT = "phone number not valid (left out; correct it on the patient page)"

#: A record refused for its identity, for the review worklist: (its source, the record, the identity it matched).
Conflict = tuple[str, PatientRecord, Identity]


class RowProblem(Exception):
    """A record that parsed but cannot be applied (unknown patient, product not named, ...)."""

    def __init__(self, field_name: str, message: str, code: str = "invalid"):
        super().__init__(message)
        self.field_name = field_name
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What the records of one import share. Frozen: a batch applies its records with a context of its own
    (``dataclasses.replace``), dropped with the batch should it roll back.

    ``source_system`` is the sender's declared source: the source of records that do not state their own
    (``PatientRecord.source``). ``report`` counts what the records did. ``known``: source identity -> pk of the
    patients stored by this import (an NDJSON batch's own in front, a ``ChainMap``, until the batch commits).
    ``conflicts``: the records refused for their identity, by source identity, put on the identity review worklist
    once the import is over. ``lookup`` and ``writes``: an NDJSON batch's (None: look up and write each record on
    its own). The audit actor is not here: the entry points name it for all they write (``audit_acting_as``).
    """

    centre: TreatmentCentre
    source_system: str
    today: dt.date
    products: Mapping[str, CarTProduct]
    report: ImportReport
    known: MutableMapping[SourceKey, int] = field(default_factory=dict)
    conflicts: dict[SourceKey, Conflict] = field(default_factory=dict)
    lookup: BatchLookup | None = None
    writes: BatchWrites | None = None

    @classmethod
    def for_import(
        cls,
        centre: TreatmentCentre,
        *,
        source_system: str = DEFAULT_SOURCE_SYSTEM,
        report: ImportReport | None = None,
    ) -> ApplyContext:
        """The context of one import for ``centre``: its today, the product catalogue read once."""
        return cls(
            centre=centre,
            source_system=source_system[:255],
            today=timezone.localdate(timezone.now(), centre.tz),
            products={product.code: product for product in CarTProduct.objects.all()},
            report=report if report is not None else ImportReport(),
        )

    def source_of(self, record: PatientRecord) -> str:
        return record.source or self.source_system

    def patient_key(self, record: InfusionRecord | RiskFlagRecord | ClinicalResource) -> SourceKey:
        """The source identity of the patient an infusion (a risk flag, a result) refers to."""
        return (record.patient_source or self.source_system, record.patient_ref)


# --------------------------------------------------------------------------------------------- one record
def record_apply(item, ctx: ApplyContext, siblings: Iterable[InfusionRecord] = ()) -> None:
    """Apply one patient, infusion, ignored item or parse issue (``phases`` gives them in order); ``siblings``
    are the other infusions of the export, which may name the product a bare administration code does not."""
    if isinstance(item, PatientRecord | InfusionRecord):
        _refuse_nul(item)
    if isinstance(item, Ignored):
        ctx.report.ignored[f"{item.resource_type}: {item.reason}"] += 1
    elif isinstance(item, PatientRecord):
        patient_apply(item, ctx)
    elif isinstance(item, InfusionRecord):
        infusion_apply(item, ctx, siblings)
    elif isinstance(item, ImportIssue):
        ctx.report.error(item)
    else:  # risk flags and results go to risk_flags_apply and clinical_apply, once the infusions are written
        raise TypeError(f"not a record applied on its own: {type(item).__name__}")


def phases(items: Iterable) -> tuple[list, list[RiskFlagRecord], list[ClinicalResource]]:
    """An export's items in the order they are applied: the records (patients before the infusions that refer to
    them; issues and ignored items keep their place), then the risk flags and then the results and diagnoses, each
    in the order they came, once the infusions they are about are written."""
    records: list = []
    flags: list[RiskFlagRecord] = []
    clinical: list[ClinicalResource] = []
    for item in items:
        if isinstance(item, RiskFlagRecord):
            flags.append(item)
        elif isinstance(item, ClinicalResource):
            clinical.append(item)
        else:
            records.append(item)
    return sorted(records, key=lambda item: 0 if isinstance(item, PatientRecord) else 1), flags, clinical


# --------------------------------------------------------------------------------------------- patients
def patient_apply(record: PatientRecord, ctx: ApplyContext) -> Patient:
    """Store a new patient, or the changed details of the patient the record is, and close the follow-up of one
    who died; returns the patient. A record refused for its identity waits in ``ctx.conflicts``."""
    source = ctx.source_of(record)
    mrn = record_mrn(record)
    if not mrn:
        raise RowProblem("identifier", "the patient has neither an MRN nor an id", "required")
    key = (source, record.source_id)
    values = {
        "given_name": record.given_name,
        "family_name": record.family_name,
        "birth_date": record.birth_date,
        "sex": record.sex,
        "email": record.email,
        "phone": _phone(record.phone, ctx),
        "preferred_language": record.preferred_language
        if record.preferred_language in dict(settings.LANGUAGES)
        else "en",
    }
    if values["phone"] is None:
        del values["phone"]  # a new patient has none; a known one keeps the number stored
    if record.sms_consent is not None:
        values["sms_consent"] = record.sms_consent
    if record.preferred_channel is not None:
        values["preferred_channel"] = record.preferred_channel
    _columns_fit(Patient, {**values, "mrn": mrn, "source_system": source, "source_id": record.source_id})
    if ctx.writes is not None and ctx.writes.patient_queued(key, mrn):
        _patients_flush(ctx)  # the same patient twice in a batch: the second finds the first, stored
    identity = _identify(record, key, mrn, ctx)
    patient = identity.patient
    if identity.conflict:
        assert patient is not None
        ctx.conflicts[key] = (source, record, identity)
        message = f"not merged into patient {patient.pk}: {identity.conflict}; it awaits an identity review"
        raise RowProblem("identifier", message, "conflict")
    system = (record.identifier_system or "") if record.mrn else ""
    died_on = record.deceased_date or ctx.today
    if patient is None:
        patient = Patient(
            centre=ctx.centre,
            mrn=mrn,
            identifier_system=system,
            source_system=source,
            source_id=record.source_id,
            **values,
        )
        ctx.report.patients_created += 1
        if ctx.writes is not None and ctx.writes.queue_creates and not record.deceased:
            ctx.writes.patient_queue(patient, key)
            return patient
        patient.save(force_insert=True)
    else:
        changed = {}  # a coordinator's decision (linked): the record contradicts the details, which stay
        if not identity.linked:
            values.update(
                mrn=mrn,
                identifier_system=system or patient.identifier_system,
                source_system=source,
                source_id=record.source_id,
            )
            changed = {k: v for k, v in values.items() if getattr(patient, k) != v}
        if "birth_date" in changed:
            _refused_as_problem(infusions.patient_birth_date_check, patient, values["birth_date"])
        if record.deceased and patient.under_follow_up:  # refused before anything of the record is written
            _refused_as_problem(infusions.patient_death_date_check, patient, died_on)
        if changed:
            for name, value in changed.items():
                setattr(patient, name, value)
            patient.save(update_fields=[*changed, "updated_at"])
            ctx.report.patients_updated += 1
        else:
            ctx.report.patients_unchanged += 1
    patient_stored(ctx, patient, key)
    if record.deceased and patient.under_follow_up:
        _plans_flush(ctx)
        if ctx.lookup is not None:
            ctx.lookup.forget(patient)
        lifecycle.patient_close(patient, status=PatientStatus.DECEASED, on=died_on, reason=DECEASED_REASON)
        ctx.report.patients_closed += 1
    return patient


def _phone(raw: str, ctx: ApplyContext) -> str | None:
    """The record's phone number in E.164; None for one that is not a valid number, which is left out and counted
    among the ignored (a follow-up must not be refused for a malformed number in the EHR)."""
    try:
        return contact_details.phone_normalise(raw, ctx.centre.country)
    except contact_details.PhoneInvalid:
        ctx.report.ignored[PHONE_LEFT_OUT] += 1
        return None


def patient_stored(ctx: ApplyContext, patient: Patient, key: SourceKey) -> None:
    """The patient of the record with source identity ``key`` is stored: infusions may refer to it."""
    ctx.known[key] = patient.pk
    if ctx.lookup is not None:
        ctx.lookup.remember(patient, key)
    ctx.report.patient_ids.add(patient.pk)


def _identify(record: PatientRecord, key: SourceKey, mrn: str, ctx: ApplyContext) -> Identity:
    if ctx.lookup is not None:
        return ctx.lookup.identify(record, key, mrn)
    _patients_flush(ctx)
    return patients_find(ctx.centre, [key], [mrn]).identify(record, key[0])


def _patient_for(record: InfusionRecord | RiskFlagRecord | ClinicalResource, ctx: ApplyContext) -> Patient:
    """The stored patient a record refers to: imported now or earlier for this centre; else ``RowProblem``."""
    key = ctx.patient_key(record)
    known = ctx.lookup.patient_for(key) if ctx.lookup is not None else None
    if known is not None:
        return known
    pk = ctx.known.get(key)
    if pk:
        patient = Patient.objects.select_related("centre").filter(pk=pk).first()
    else:
        found = patients_find(ctx.centre, [key], ())
        patient = found.linked.get(key) or found.by_source.get(key)
    if patient is None and key in ctx.conflicts:
        raise RowProblem("subject.reference", "the Patient it refers to awaits an identity review", "conflict")
    if patient is None:
        raise RowProblem(
            "subject.reference",
            "the Patient it refers to is neither in this import nor imported earlier for this centre",
            "not-found",
        )
    return patient


# --------------------------------------------------------------------------------------------- infusions
def infusion_apply(record: InfusionRecord, ctx: ApplyContext, siblings: Iterable[InfusionRecord] = ()) -> Infusion:
    """Store a new infusion or a corrected date or product, through ``care.infusions`` (its rules refused as
    ``RowProblem``). A patient's first infusion in an NDJSON batch is inserted with the batch and planned with it
    (``BatchWrites``): it shares ``infusion_check`` with ``infusion_record``, which plans any other at once.
    """
    try:
        return _infusion_apply(record, ctx, siblings)
    except infusions.InfusionRefused as exc:  # named by the model's field: say the record's element
        element = {"infusion_date": "date", "patient": "subject.reference"}[exc.field_name]
        raise RowProblem(element, exc.message, "business-rule") from exc


def _infusion_apply(record: InfusionRecord, ctx: ApplyContext, siblings: Iterable[InfusionRecord]) -> Infusion:
    if record.infusion_date < EARLIEST_INFUSION:
        raise RowProblem(
            "date", f"an infusion before {EARLIEST_INFUSION} predates every approved CAR-T product", "value"
        )
    _patients_flush(ctx)
    patient = _patient_for(record, ctx)
    ctx.report.patient_ids.add(patient.pk)
    source_id = record.source_id
    _columns_fit(Infusion, {"source_id": source_id, "lot_number": record.lot_number})
    # The patient's infusions in one query (a handful at most): the three lookups below are made on them.
    stored = _infusions_of(patient, ctx)
    existing = next((i for i in stored if i.source_system == ctx.source_system and i.source_id == source_id), None)
    product_code = record.product_code or _product_from(record, patient, existing, siblings, ctx)
    product = ctx.products.get(product_code) if product_code else None  # None: to confirm
    if product is None and product_code:
        raise RowProblem("code", f"CAR-T product {product_code!r} is not in the catalogue", "code-invalid")
    product_id = product.pk if product else None
    if existing is None:
        # The same infusion described by another resource; or recorded earlier without its product, now named.
        existing = next(
            (i for i in stored if i.product_id in (product_id, None) and i.infusion_date == record.infusion_date),
            None,
        )
        if existing is not None and existing.product_id == product_id:
            ctx.report.infusions_unchanged += 1
            return existing
    if existing is None:
        infusions.infusion_check(patient, record.infusion_date)
        infusion = Infusion(
            patient=patient,
            product=product,
            infusion_date=record.infusion_date,
            lot_number=record.lot_number,
            source_system=ctx.source_system,
            source_id=source_id,
        )
        ctx.report.infusions_created += 1
        # A patient's first infusion is planned with the others of the batch; one that may supersede (or be
        # superseded by) another is recorded at once, after those put off so far.
        if ctx.writes is not None and not stored:
            ctx.writes.infusion_defer(infusion, record)
            if ctx.lookup is not None:
                ctx.lookup.infusion_added(patient, infusion)
            return infusion
        _plans_flush(ctx)
        _infusions_forget(patient, ctx)
        diff = infusions.infusion_record(infusion, reason=PLAN_REASON)
        ctx.report.visits_planned += len(diff.added)
        return infusion
    if existing.infusion_date == record.infusion_date and existing.product_id == product_id:
        ctx.report.infusions_unchanged += 1
        return existing
    infusions.infusion_check(patient, record.infusion_date, correcting=True)
    _plans_flush(ctx)
    _infusions_forget(patient, ctx)
    diff = infusions.infusion_correct(
        existing,
        infusion_date=record.infusion_date,
        product=product,
        reason="EHR import: infusion date or product corrected",
    )
    ctx.report.infusions_replanned += 1
    ctx.report.visits_planned += len(diff.added) if diff else 0
    return existing


def _infusions_of(patient: Patient, ctx: ApplyContext) -> list[Infusion]:
    """The patient's infusions (a handful at most), by pk; those of a batch's patients in one query."""
    if ctx.lookup is not None:
        if ctx.lookup.infusions is None:
            _infusions_flush(ctx)
            ctx.lookup.infusions_load()
        found = ctx.lookup.infusions_of(patient)
        if found is not None:
            return found
    _infusions_flush(ctx)
    return list(Infusion.objects.filter(patient=patient).order_by("pk"))


def _infusions_forget(patient: Patient, ctx: ApplyContext) -> None:
    if ctx.lookup is not None:
        ctx.lookup.infusions_forget(patient)


def _product_from(
    record: InfusionRecord,
    patient: Patient,
    existing: Infusion | None,
    siblings: Iterable[InfusionRecord],
    ctx: ApplyContext,
) -> str | None:
    """A generic administration code (CPT 38228, ICD-10-PCS XW033C3) names no product: find it elsewhere.

    None for a Procedure whose product is named nowhere: EHRs often record the administration only. Refusing
    it would leave the patient without follow-up, so the infusion is created with its product to confirm
    (planned on the intensified variant meanwhile, see ``engine.intensified_reasons``) and waits on the
    physicians' worklist. Any other resource naming no product is refused.
    """
    if existing is not None:
        return existing.product.code if existing.product_id else None
    for other in siblings:
        if (
            other.product_code
            and other.patient_ref == record.patient_ref
            and abs((other.infusion_date - record.infusion_date).days) <= 1
        ):
            return other.product_code
    _infusions_flush(ctx)
    stored = (
        Infusion.objects.filter(patient=patient, infusion_date=record.infusion_date).select_related("product").first()
    )
    if stored is not None:
        return stored.product.code if stored.product_id else None
    if record.resource_type == "Procedure":
        return None
    raise RowProblem(
        "code",
        f"code {record.matched_code[1]} marks a CAR-T infusion but names no product; add the product's code "
        "(e.g. its HCPCS Q-code or NDC) or a MedicationAdministration of the product",
        "code-invalid",
    )


# --------------------------------------------------------------------------------------------- after the infusions
def risk_flags_apply(records: Iterable[RiskFlagRecord], ctx: ApplyContext) -> list[ImportIssue]:
    """Record risk flags on their patients' infusions, each patient's at once, re-planning those the flags change
    (``care.risk_flags``); returns the flags refused, as issues for the caller to report.

    Called once the records of a Bundle, a CSV or an NDJSON batch are applied and the new infusions planned, so
    that a flag sent in the same export as the infusion reaches it."""
    _plans_flush(ctx)
    refused: list[ImportIssue] = []
    for grouped in _by_patient(records, ctx).values():
        try:
            patient = _patient_for(grouped[0], ctx)
        except RowProblem as problem:
            refused += [issue_of(record, problem) for record in grouped]
            continue
        outcomes = risk_flags.patient_risk_flags_import(patient, grouped, reason=PLAN_REASON)
        ctx.report.risk_flags_recorded += sum(len(outcome.changed) for outcome in outcomes)
        ctx.report.visits_planned += sum(len(outcome.diff.added) for outcome in outcomes if outcome.diff)
    return refused


def clinical_apply(items: Iterable[ClinicalResource], ctx: ApplyContext) -> None:
    """Read results and diagnoses and raise the second-cancer signals they call for on each patient's current
    infusion (``signals.review.signals_record``: deduplicated, audited, never emailed); then let the encounters,
    appointments and results reconcile the patients' visits (``care.reconcile``), all the patients at once: the
    current infusions are read in one query and the visits' changes written together.

    Called after ``risk_flags_apply``. A resource about a patient this centre does not know, or one who had no
    CAR-T infusion, is counted as ignored: an EHR export carries far more than the patients followed here."""
    found: list[tuple[Patient, list[ClinicalResource]]] = []
    for grouped in _by_patient(items, ctx).values():
        try:
            found.append((_patient_for(grouped[0], ctx), grouped))
        except RowProblem:
            ctx.report.ignored[f"{grouped[0].resource_type}: {UNKNOWN_PATIENT}"] += len(grouped)
    current = _current_infusions([patient for patient, _ in found])
    batch: list[PatientRecords] = []
    ruleset = ruleset_current() if current else None  # the signal rules, read once for the batch's patients
    # what the batch's new results are compared with: those already on the patients' visits (earlier batches,
    # earlier imports, a person's entries), read in one query
    history = lab_history([i.pk for i in current.values()], ruleset[1].laboratory_loincs) if ruleset else {}
    for patient, grouped in found:
        infusion = current.get(patient.pk)
        if infusion is None:
            ctx.report.ignored[f"{grouped[0].resource_type}: {NO_INFUSION}"] += len(grouped)
            continue
        infusion.patient = patient  # the object the batch holds: not read again
        parsed = clinical_records(item.resource for item in grouped)
        for left_out in parsed.ignored:
            ctx.report.ignored[f"{left_out.resource_type}: {left_out.reason}"] += 1
        records = dataclasses.replace(parsed.records(), history=history.get(infusion.pk, ()))
        raised = signals_record(infusion, records, source="ehr-import", ruleset=ruleset).raised
        ctx.report.signals_raised += raised
        batch.append(PatientRecords(patient, infusion, grouped, parsed.labs))
    for outcome in reconcile_from_ehr(batch, sender=ctx.source_system):
        ctx.report.reconciled(outcome)


def _current_infusions(patients: list[Patient]) -> dict[int, Infusion]:
    """Each patient's current infusion (the latest not superseded), in one query."""
    rows = Infusion.objects.filter(patient__in=patients, superseded_by__isnull=True).order_by("pk")
    return {infusion.patient_id: infusion for infusion in rows}


def _by_patient(items: Iterable, ctx: ApplyContext) -> dict[SourceKey, list]:
    """Records by the patient they are about (in the order they came)."""
    grouped: dict[SourceKey, list] = {}
    for item in items:
        grouped.setdefault(ctx.patient_key(item), []).append(item)
    return grouped


# --------------------------------------------------------------------------------------------- a batch's writes
def _patients_flush(ctx: ApplyContext) -> None:
    """Insert the patients a batch queued, before anything that must find them in the database."""
    if ctx.writes is not None:
        ctx.writes.patients_flush(ctx)


def _infusions_flush(ctx: ApplyContext) -> None:
    if ctx.writes is not None:
        ctx.writes.infusions_flush()


def _plans_flush(ctx: ApplyContext) -> None:
    """Plan the infusions a batch put off, before a re-plan or a closure that must come after them."""
    if ctx.writes is not None:
        ctx.writes.plans_flush(ctx)


# --------------------------------------------------------------------------------------------- problems
def _refuse_nul(record) -> None:
    """A NUL character is refused here, whatever the database would do with it."""
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, str) and "\x00" in value:
            raise RowProblem(name, "null characters are not allowed", "value")


def _columns_fit(model: type[Patient | Infusion], values: dict[str, object]) -> None:
    """Refuse a value longer than its column: cut short, an MRN or a name would be stored silently wrong."""
    for name, value in values.items():
        limit = model._meta.get_field(name).max_length
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise RowProblem(name, f"longer than the {limit} characters stored", "too-long")


def issue_of(item, problem: RowProblem | str) -> ImportIssue:
    if isinstance(problem, str):
        return ImportIssue(getattr(item, "entry", None), getattr(item, "line", None), "", problem, "conflict")
    return ImportIssue(
        getattr(item, "entry", None), getattr(item, "line", None), problem.field_name, problem.message, problem.code
    )


def issue_refused(item, exc: Exception) -> ImportIssue:
    """The issue of a record the database refused (one of ``REFUSED``), logged by its place and the error's kind
    only: the error's text may quote the record's values."""
    line, entry = getattr(item, "line", None), getattr(item, "entry", None)
    logger.info("import record refused (line %s, entry %s): %s", line, entry, type(exc).__name__)
    return issue_of(item, "cannot be stored: a duplicate identifier, or a value the database refuses")


#: The record's element for each patient field the infusion rules name.
_PATIENT_ELEMENTS = {"birth_date": "birthDate", "status_date": "deceasedDateTime"}


def _refused_as_problem(check, patient: Patient, value) -> None:
    """Run one of ``care.infusions``' patient checks; its refusal is the record's problem, named by its element."""
    try:
        check(patient, value)
    except infusions.InfusionRefused as exc:
        raise RowProblem(_PATIENT_ELEMENTS[exc.field_name], exc.message, "business-rule") from exc
