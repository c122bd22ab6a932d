"""Apply parsed records to the database: patients (who they are is ``imports.identity``'s decision) and infusions.

``Importer`` applies the records of one import for one centre, and keeps what makes a stream of batches fast: the
batch's patients and infusions looked up at once, new rows queued for one insert per table, new infusions planned
together (``imports.batching`` decides when). A record that cannot be applied raises ``RowProblem`` before writing
anything; one the database refuses raises one of ``REFUSED``.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Iterable

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from surveillance.care import contact_details, infusions, lifecycle, planning, risk_flags
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
from surveillance.signals.review import signals_record

logger = logging.getLogger("surveillance.imports.apply")

DEFAULT_SOURCE_SYSTEM = "ehr"
DECEASED_REASON = "Deceased per EHR import"
UNKNOWN_PATIENT = "about a patient not followed here"
NO_INFUSION = "about a patient with no CAR-T infusion recorded"
PLAN_REASON = "EHR import"

#: What the database (or a lifecycle rule) may refuse while a record is applied: the record is reported, not raised.
REFUSED = (IntegrityError, DataError, lifecycle.TransitionError)


#: How the report counts a phone number that was not stored because it is not a valid number.
PHONE_LEFT_OUT = "phone number not valid (left out; correct it on the patient page)"


class RowProblem(Exception):
    """A record that parsed but cannot be applied (unknown patient, product not named, ...)."""

    def __init__(self, field_name: str, message: str, code: str = "invalid"):
        super().__init__(message)
        self.field_name = field_name
        self.message = message
        self.code = code


class Importer:
    """Applies records for one centre on behalf of one sender; reused across the batches of a stream.

    ``source_system`` is the sender's declared source: the source of records that do not state their own
    (``PatientRecord.source``). Who a Patient is, is decided by ``imports.identity``; a record refused there for a
    conflict is kept in ``conflicts`` for the identity review worklist.
    """

    def __init__(self, centre: TreatmentCentre, *, source_system: str = DEFAULT_SOURCE_SYSTEM, report: ImportReport):
        self.centre = centre
        self.source_system = source_system[:255]
        self.report = self._main = report
        self.today = timezone.localdate(timezone.now(), centre.tz)
        self.products = {p.code: p for p in CarTProduct.objects.all()}
        # Source identity -> patient pk, within this import; a batch's own entries in front until it commits.
        self._patients: ChainMap[SourceKey, int] = ChainMap()
        # Records refused for their identity, by source identity: the review worklist's, once the import is over.
        self.conflicts: dict[SourceKey, tuple[str, PatientRecord, Identity]] = {}
        # A batch applied without savepoints queues its new patients and infusions (``creates_flush``).
        self.queue_creates = False
        self._new_patients: list[tuple[Patient, SourceKey]] = []
        self._queued: set[tuple[str, object]] = set()  # ("source", key) and ("mrn", value) of the queued patients
        self._new_infusions: list[Infusion] = []
        # NDJSON batches: new infusions are planned together at the end of the batch (``plans_flush``), and the
        # batch's patients and infusions are looked up with a query each (``batch_prepare``).
        self.defer_plans = False
        self._pending: list[tuple[Infusion, InfusionRecord]] = []
        self._flushed: list[tuple[Infusion, InfusionRecord]] = []  # planned while applying the current item
        self._flushed_visits = 0
        self._lookup: BatchLookup | None = None  # None: each record is looked up on its own
        self._flags: list[RiskFlagRecord] = []  # recorded once their infusions are (``flags_apply``)
        self._clinical: list[ClinicalResource] = []  # read for signals once their infusions are (``clinical_apply``)

    # --- a batch of NDJSON lines
    def batch_begin(self, *, careful: bool) -> None:
        """Start applying a batch, with a report of its own until it commits (``batch_commit``); what an earlier
        attempt at the same batch left (rolled back) is forgotten.

        ``careful``: each record in a savepoint, its rows written at once, so that a record the database refuses
        is reported by its line and the others kept. Otherwise no savepoints, and new patients and infusions are
        inserted a statement per batch: a refusal then fails the whole batch, which is applied again carefully.
        """
        self.report = ImportReport(dry_run=self._main.dry_run, format=self._main.format)
        self._patients = ChainMap({}, self._patients.maps[-1])
        self.queue_creates = not careful
        self._new_patients, self._queued, self._new_infusions, self._pending = [], set(), [], []
        self.item_begin()
        self.cache_drop()

    def batch_commit(self) -> None:
        """The batch is stored: what it did counts in the import's report, its patients are known."""
        self._patients.maps[-1].update(self._patients.maps[0])
        self._main.merge(self.report)
        self.report = self._main

    def creates_flush(self) -> None:
        """Insert the queued patients and infusions, a statement per table."""
        self._patients_flush()
        self._infusions_flush()

    def _patients_flush(self) -> None:
        patients, self._new_patients, self._queued = self._new_patients, [], set()
        if patients:
            Patient.objects.bulk_create([patient for patient, _ in patients])
            for patient, key in patients:
                self._patient_applied(patient, key)

    def _infusions_flush(self) -> None:
        infusions, self._new_infusions = self._new_infusions, []
        if infusions:
            Infusion.objects.bulk_create(infusions)

    # --- looking a batch up at once
    def batch_prepare(self, items: list) -> None:
        """Look up the batch's patients (by source identity or MRN) and its infusions' patients at once."""
        patients = [item for item in items if isinstance(item, PatientRecord)]
        self._lookup = BatchLookup.load(
            self.centre,
            {(self._source(record), record.source_id) for record in patients},
            {record_mrn(record) for record in patients},
            {self._patient_key(item) for item in items if isinstance(item, InfusionRecord)},
            self._patients,
        )

    def cache_drop(self) -> None:
        """Forget what ``batch_prepare`` looked up: lookups query the database again."""
        self._lookup = None

    def _source(self, record: PatientRecord) -> str:
        return record.source or self.source_system

    def _patient_key(self, record: InfusionRecord | RiskFlagRecord) -> SourceKey:
        """The source identity of the patient an infusion (or a risk flag) refers to."""
        return (record.patient_source or self.source_system, record.patient_ref)

    def _identify(self, record: PatientRecord, key: SourceKey, mrn: str) -> Identity:
        if self._lookup is not None:
            return self._lookup.identify(record, key, mrn)
        self._patients_flush()
        return patients_find(self.centre, [key], [mrn]).identify(record, key[0])

    def _infusions_of(self, patient: Patient) -> list[Infusion]:
        """The patient's infusions (a handful at most), by pk; those of the batch's patients in one query."""
        if self._lookup is not None:
            if self._lookup.infusions is None:
                self._infusions_flush()
                self._lookup.infusions_load()
            found = self._lookup.infusions_of(patient)
            if found is not None:
                return found
        self._infusions_flush()
        return list(Infusion.objects.filter(patient=patient).order_by("pk"))

    def _infusions_forget(self, patient: Patient) -> None:
        if self._lookup is not None:
            self._lookup.infusions_forget(patient)

    # --- planning new infusions together
    def plans_flush(self) -> None:
        """Plan the new infusions deferred so far, in bulk (``planning.infusions_plan_new``).

        Should that fail, each is planned on its own, and one that cannot be is reported by its line, as when
        infusions were planned one by one.
        """
        self.creates_flush()
        pending, self._pending = self._pending, []
        if not pending:
            return
        self._flushed += pending
        before = self.report.visits_planned
        try:
            self._plans_write(pending)
        finally:
            self._flushed_visits += self.report.visits_planned - before

    def item_begin(self) -> None:
        self._flushed, self._flushed_visits = [], 0

    def item_rolled_back(self, *, changed: bool = True) -> None:
        """The current item's savepoint was rolled back: so were the plans flushed in it, which are pending again.

        ``changed``: the item may have written rows before it failed, so what was looked up may be stale.
        """
        self._pending = self._flushed + self._pending
        self.report.visits_planned -= self._flushed_visits
        self.item_begin()
        if changed:
            self.cache_drop()

    def _plans_write(self, pending: list[tuple[Infusion, InfusionRecord]]) -> None:
        try:
            with transaction.atomic():
                diffs = planning.infusions_plan_new([infusion for infusion, _ in pending], reason=PLAN_REASON)
        except REFUSED:
            for infusion, record in pending:
                try:
                    with transaction.atomic():
                        self.report.visits_planned += len(planning.infusion_plan(infusion, reason=PLAN_REASON).added)
                except REFUSED as exc:
                    logger.info("ndjson line %s refused: %s", record.line, type(exc).__name__)
                    Infusion.objects.filter(pk=infusion.pk).delete()
                    self.cache_drop()
                    self.report.error(
                        issue_of(record, "cannot be stored: a duplicate identifier, or a value the database refuses")
                    )
            return
        self.report.visits_planned += sum(len(diff.added) for diff in diffs)

    # --- patients
    def _phone(self, raw: str) -> str | None:
        """The record's phone number in E.164; None for one that is not a valid number, which is left out and
        counted among the ignored (a follow-up must not be refused for a malformed number in the EHR)."""
        try:
            return contact_details.phone_normalise(raw, self.centre.country)
        except contact_details.PhoneInvalid:
            self.report.ignored[PHONE_LEFT_OUT] += 1
            return None

    def patient_apply(self, record: PatientRecord) -> Patient:
        source = self._source(record)
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
            "phone": self._phone(record.phone),
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
        if {("source", key), ("mrn", mrn)} & self._queued:
            self._patients_flush()  # the same patient twice in a batch: the second finds the first, stored
        identity = self._identify(record, key, mrn)
        patient = identity.patient
        if identity.conflict:
            assert patient is not None
            self.conflicts[key] = (source, record, identity)
            message = f"not merged into patient {patient.pk}: {identity.conflict}; it awaits an identity review"
            raise RowProblem("identifier", message, "conflict")
        system = (record.identifier_system or "") if record.mrn else ""
        if patient is None:
            patient = Patient(
                centre=self.centre,
                mrn=mrn,
                identifier_system=system,
                source_system=source,
                source_id=record.source_id,
                **values,
            )
            self.report.patients_created += 1
            if self.queue_creates and not record.deceased:
                self._new_patients.append((patient, key))
                self._queued |= {("source", key), ("mrn", mrn)}
                return patient
            patient.save(force_insert=True)
        elif identity.linked:  # a coordinator's decision: the record contradicts the details, which stay
            self.report.patients_unchanged += 1
        else:
            values.update(
                mrn=mrn,
                identifier_system=system or patient.identifier_system,
                source_system=source,
                source_id=record.source_id,
            )
            changed = {k: v for k, v in values.items() if getattr(patient, k) != v}
            if "birth_date" in changed:
                _refused_as_problem(infusions.patient_birth_date_check, patient, values["birth_date"])
            if changed:
                for name, value in changed.items():
                    setattr(patient, name, value)
                patient.save(update_fields=[*changed, "updated_at"])
                self.report.patients_updated += 1
            else:
                self.report.patients_unchanged += 1
        self._patient_applied(patient, key)
        if record.deceased and patient.under_follow_up:
            _refused_as_problem(infusions.patient_death_date_check, patient, record.deceased_date or self.today)
            self.plans_flush()
            if self._lookup is not None:
                self._lookup.forget(patient)
            lifecycle.patient_close(
                patient, status=PatientStatus.DECEASED, on=record.deceased_date or self.today, reason=DECEASED_REASON
            )
            self.report.patients_closed += 1
        return patient

    def _patient_applied(self, patient: Patient, key: SourceKey) -> None:
        """The record's patient is stored: infusions may refer to it."""
        self._patients[key] = patient.pk
        if self._lookup is not None:
            self._lookup.remember(patient, key)
        self.report.patient_ids.add(patient.pk)

    def _patient_for(self, record: InfusionRecord | RiskFlagRecord) -> Patient:
        key = self._patient_key(record)
        known = self._lookup.patient_for(key) if self._lookup is not None else None
        if known is not None:
            return known
        pk = self._patients.get(key)
        if pk:
            patient = Patient.objects.select_related("centre").filter(pk=pk).first()
        else:
            found = patients_find(self.centre, [key], ())
            patient = found.linked.get(key) or found.by_source.get(key)
        if patient is None and key in self.conflicts:
            raise RowProblem("subject.reference", "the Patient it refers to awaits an identity review", "conflict")
        if patient is None:
            raise RowProblem(
                "subject.reference",
                "the Patient it refers to is neither in this import nor imported earlier for this centre",
                "not-found",
            )
        return patient

    # --- infusions
    def infusion_apply(self, record: InfusionRecord, siblings: Iterable[InfusionRecord] = ()) -> Infusion:
        """Store a new infusion or a corrected date or product, through ``care.infusions`` (its rules refused as
        ``RowProblem``). A patient's first infusion in an NDJSON batch is inserted with the batch and planned with
        it (``plans_flush``): it shares ``infusion_check`` with ``infusion_record``, which plans any other at once.
        """
        try:
            return self._infusion_apply(record, siblings)
        except infusions.InfusionRefused as exc:  # named by the model's field: say the record's element
            element = {"infusion_date": "date", "patient": "subject.reference"}[exc.field_name]
            raise RowProblem(element, exc.message, "business-rule") from exc

    def _infusion_apply(self, record: InfusionRecord, siblings: Iterable[InfusionRecord]) -> Infusion:
        if record.infusion_date < EARLIEST_INFUSION:
            raise RowProblem(
                "date", f"an infusion before {EARLIEST_INFUSION} predates every approved CAR-T product", "value"
            )
        self._patients_flush()
        patient = self._patient_for(record)
        self.report.patient_ids.add(patient.pk)
        source_id = record.source_id
        _columns_fit(Infusion, {"source_id": source_id, "lot_number": record.lot_number})
        # The patient's infusions in one query (a handful at most): the three lookups below are made on them.
        stored = self._infusions_of(patient)
        existing = next((i for i in stored if i.source_system == self.source_system and i.source_id == source_id), None)
        product_code = record.product_code or self._product_from(record, patient, existing, siblings)
        product = self.products.get(product_code) if product_code else None  # None: to confirm
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
                self.report.infusions_unchanged += 1
                return existing
        if existing is None:
            infusions.infusion_check(patient, record.infusion_date)
            infusion = Infusion(
                patient=patient,
                product=product,
                infusion_date=record.infusion_date,
                lot_number=record.lot_number,
                source_system=self.source_system,
                source_id=source_id,
            )
            self.report.infusions_created += 1
            # A patient's first infusion is planned with the others of the batch (``plans_flush``); one that
            # may supersede (or be superseded by) another is recorded at once, after those deferred so far.
            if self.defer_plans and not stored:
                if self.queue_creates:
                    self._new_infusions.append(infusion)
                else:
                    infusion.save(force_insert=True)
                self._pending.append((infusion, record))
                if self._lookup is not None:
                    self._lookup.infusion_added(patient, infusion)
                return infusion
            self.plans_flush()
            self._infusions_forget(patient)
            diff = infusions.infusion_record(infusion, reason=PLAN_REASON)
            self.report.visits_planned += len(diff.added)
            return infusion
        if existing.infusion_date == record.infusion_date and existing.product_id == product_id:
            self.report.infusions_unchanged += 1
            return existing
        infusions.infusion_check(patient, record.infusion_date, correcting=True)
        self.plans_flush()
        self._infusions_forget(patient)
        diff = infusions.infusion_correct(
            existing,
            infusion_date=record.infusion_date,
            product=product,
            reason="EHR import: infusion date or product corrected",
        )
        self.report.infusions_replanned += 1
        self.report.visits_planned += len(diff.added) if diff else 0
        return existing

    def _product_from(self, record, patient, existing, siblings) -> str | None:
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
        self._infusions_flush()
        stored = (
            Infusion.objects.filter(patient=patient, infusion_date=record.infusion_date)
            .select_related("product")
            .first()
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

    def _by_patient(self, items: list) -> dict[SourceKey, list]:
        """Records gathered during a batch, by the patient they are about (in the order they came)."""
        grouped: dict[SourceKey, list] = {}
        for item in items:
            grouped.setdefault(self._patient_key(item), []).append(item)
        return grouped

    # --- risk flags, once the infusions they are about are written
    def flags_apply(self) -> list[tuple[RiskFlagRecord, RowProblem]]:
        """Record the risk flags gathered so far on their patients' infusions, each patient's at once, re-planning
        those the flags change (``care.risk_flags``); returns the flags refused, for the caller to report.

        Called once the records of a Bundle, a CSV or an NDJSON batch are applied and the new infusions planned, so
        that a flag sent in the same export as the infusion reaches it."""
        self.plans_flush()
        by_patient, self._flags = self._by_patient(self._flags), []
        refused: list[tuple[RiskFlagRecord, RowProblem]] = []
        for records in by_patient.values():
            try:
                patient = self._patient_for(records[0])
            except RowProblem as problem:
                refused += [(record, problem) for record in records]
                continue
            outcomes = risk_flags.patient_risk_flags_import(patient, records, reason=PLAN_REASON)
            self.report.risk_flags_recorded += sum(len(outcome.changed) for outcome in outcomes)
            self.report.visits_planned += sum(len(outcome.diff.added) for outcome in outcomes if outcome.diff)
        return refused

    # --- results and diagnoses, for the second-cancer signals
    def clinical_apply(self) -> None:
        """Read the results and diagnoses gathered so far and raise the second-cancer signals they call for on each
        patient's current infusion (``signals.review.signals_record``: deduplicated, audited, never emailed).

        Called after ``flags_apply``. A resource about a patient this centre does not know, or one who had no CAR-T
        infusion, is counted as ignored: an EHR export carries far more than the patients followed here."""
        by_patient, self._clinical = self._by_patient(self._clinical), []
        for items in by_patient.values():
            try:
                patient = self._patient_for(items[0])
            except RowProblem:
                self.report.ignored[f"{items[0].resource_type}: {UNKNOWN_PATIENT}"] += len(items)
                continue
            infusion = Infusion.objects.filter(patient=patient, superseded_by__isnull=True).order_by("-pk").first()
            if infusion is None:
                self.report.ignored[f"{items[0].resource_type}: {NO_INFUSION}"] += len(items)
                continue
            parsed = clinical_records(item.resource for item in items)
            for left_out in parsed.ignored:
                self.report.ignored[f"{left_out.resource_type}: {left_out.reason}"] += 1
            self.report.signals_raised += signals_record(infusion, parsed.records(), source="ehr-import").raised

    # --- one record, in a savepoint
    def apply(self, item, siblings: Iterable[InfusionRecord] = ()) -> None:
        if isinstance(item, PatientRecord | InfusionRecord):
            _refuse_nul(item)
        if isinstance(item, Ignored):
            self.report.ignored[f"{item.resource_type}: {item.reason}"] += 1
        elif isinstance(item, PatientRecord):
            self.patient_apply(item)
        elif isinstance(item, InfusionRecord):
            self.infusion_apply(item, siblings)
        elif isinstance(item, RiskFlagRecord):
            self._flags.append(item)
        elif isinstance(item, ClinicalResource):
            self._clinical.append(item)
        elif isinstance(item, ImportIssue):
            self.report.error(item)


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


def ordered(items: list) -> list:
    """Patients before the infusions that refer to them; issues and ignored items keep their place."""
    return sorted(items, key=lambda item: 0 if isinstance(item, PatientRecord) else 1)


#: The record's element for each patient field the infusion rules name.
_PATIENT_ELEMENTS = {"birth_date": "birthDate", "status_date": "deceasedDateTime"}


def _refused_as_problem(check, patient: Patient, value) -> None:
    """Run one of ``care.infusions``' patient checks; its refusal is the record's problem, named by its element."""
    try:
        check(patient, value)
    except infusions.InfusionRefused as exc:
        raise RowProblem(_PATIENT_ELEMENTS[exc.field_name], exc.message, "business-rule") from exc
