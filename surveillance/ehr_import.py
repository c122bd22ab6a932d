"""Import EHR exports (FHIR Bundle, Bulk Data NDJSON, CSV) into patients and infusions, and plan their schedules.

The parsers (``surveillance.fhir``, ``surveillance.ehr_csv``) turn the input into validated records; this module
decides identity and writes rows:

- a patient is the same patient when its source identity (centre, source system, source id) or, failing that, its
  MRN within the centre matches; a record without an MRN keeps its source id as MRN;
- an infusion is the same infusion when its source identity matches, or when the patient already has an infusion of
  the same product on the same date (a Procedure and a MedicationAdministration often describe one infusion);
- a new infusion is planned at once (the import is the instruction, so no preview is confirmed); a changed infusion
  date re-plans it as the planner does; a deceased patient's follow-up is closed.

Importing the same export twice changes nothing. A Bundle is atomic: any problem (in parsing or in applying)
rejects it whole with an OperationOutcome naming the entry and the element. NDJSON is applied in batches of lines,
each committed on its own, and problems are reported per line. ``dry_run`` applies everything inside a transaction
that is rolled back, so the report says exactly what would happen.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from surveillance import lifecycle, planning
from surveillance.fhir.codes import CarTCodeIndex, product_names
from surveillance.fhir.parse import parse_bundle, parse_ndjson
from surveillance.fhir.records import (
    FhirImportError,
    Ignored,
    ImportIssue,
    InfusionRecord,
    PatientRecord,
)
from surveillance.models import CarTProduct, Infusion, Patient, PatientStatus, ProductCode, TreatmentCentre

logger = logging.getLogger("surveillance.ehr_import")

DEFAULT_SOURCE_SYSTEM = "ehr"
DEFAULT_BATCH_LINES = 500
MAX_REPORTED_ERRORS = 1000
DECEASED_REASON = "Deceased per EHR import"
EARLIEST_INFUSION = dt.date(2010, 1, 1)  # as the database's infusion_date_plausible constraint


class _DryRun(Exception):
    """Raised inside the transaction of a dry run to roll it back."""


def import_max_bytes() -> int:
    return int(settings.CARTWATCH.get("IMPORT_MAX_BYTES", 50 * 1024 * 1024))


def car_t_code_index() -> CarTCodeIndex:
    """The CAR-T codes of the product catalogue (``ProductCode`` rows), as the parsers look them up."""
    rows = ProductCode.objects.values("system", "code", "product__code", "marks_infusion")
    return CarTCodeIndex.from_rows(
        {"system": r["system"], "code": r["code"], "product": r["product__code"], "marks_infusion": r["marks_infusion"]}
        for r in rows
    )


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    dry_run: bool = False
    format: str = ""
    patients_created: int = 0
    patients_updated: int = 0
    patients_unchanged: int = 0
    patients_closed: int = 0
    infusions_created: int = 0
    infusions_replanned: int = 0
    infusions_unchanged: int = 0
    visits_planned: int = 0
    ignored: Counter = field(default_factory=Counter)
    errors: list[ImportIssue] = field(default_factory=list)
    error_count: int = 0
    lines: int = 0
    patient_ids: set[int] = field(default_factory=set)

    def error(self, issue: ImportIssue) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(issue)

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "format": self.format,
            "patients": {
                "created": self.patients_created,
                "updated": self.patients_updated,
                "unchanged": self.patients_unchanged,
                "closed": self.patients_closed,
            },
            "infusions": {
                "created": self.infusions_created,
                "replanned": self.infusions_replanned,
                "unchanged": self.infusions_unchanged,
            },
            "visits_planned": self.visits_planned,
            "ignored": {"count": sum(self.ignored.values()), "by_reason": dict(sorted(self.ignored.items()))},
            "lines": self.lines,
            "error_count": self.error_count,
            "errors": [
                {"line": i.line, "entry": i.entry, "field": i.expression() or "", "message": i.message, "code": i.code}
                for i in self.errors
            ],
        }

    @property
    def changed(self) -> bool:
        return bool(
            self.patients_created
            or self.patients_updated
            or self.patients_closed
            or self.infusions_created
            or self.infusions_replanned
        )


class RowProblem(Exception):
    """A record that parsed but cannot be applied (unknown patient, product not named, ...)."""

    def __init__(self, field_name: str, message: str, code: str = "invalid"):
        super().__init__(message)
        self.field_name = field_name
        self.message = message
        self.code = code


# --------------------------------------------------------------------------------------------- applying records
class Importer:
    """Applies records for one centre and one source system; reused across the batches of a stream."""

    PATIENT_FIELDS = ("given_name", "family_name", "birth_date", "sex", "email", "phone", "preferred_language")

    def __init__(self, centre: TreatmentCentre, *, source_system: str = DEFAULT_SOURCE_SYSTEM, report: ImportReport):
        self.centre = centre
        self.source_system = source_system[:255]
        self.report = report
        self.today = timezone.localdate(timezone.now(), centre.tz)
        self.products = {p.code: p for p in CarTProduct.objects.all()}
        self._patients: dict[str, int] = {}  # source id -> patient pk, within this import

    # --- patients
    def patient_apply(self, record: PatientRecord) -> Patient:
        mrn = (record.mrn or record.source_id).strip()[:64]
        if not mrn:
            raise RowProblem("identifier", "the patient has neither an MRN nor an id", "required")
        source_id = record.source_id[:128]
        patient = (
            Patient.objects.filter(centre=self.centre, source_system=self.source_system, source_id=source_id).first()
            or Patient.objects.filter(centre=self.centre, mrn=mrn).first()
        )
        values = {
            "given_name": record.given_name[:100],
            "family_name": record.family_name[:100],
            "birth_date": record.birth_date,
            "sex": record.sex,
            "email": record.email[:254],
            "phone": record.phone[:32],
            "preferred_language": record.preferred_language
            if record.preferred_language in dict(settings.LANGUAGES)
            else "en",
        }
        if patient is None:
            patient = Patient.objects.create(
                centre=self.centre, mrn=mrn, source_system=self.source_system, source_id=source_id, **values
            )
            self.report.patients_created += 1
        else:
            values.update(mrn=mrn, source_system=self.source_system, source_id=source_id)
            changed = {k: v for k, v in values.items() if getattr(patient, k) != v}
            if changed:
                for key, value in changed.items():
                    setattr(patient, key, value)
                patient.save(update_fields=[*changed, "updated_at"])
                self.report.patients_updated += 1
            else:
                self.report.patients_unchanged += 1
        self._patients[record.source_id] = patient.pk
        self.report.patient_ids.add(patient.pk)
        if record.deceased and patient.under_follow_up:
            lifecycle.patient_close(
                patient, status=PatientStatus.DECEASED, on=record.deceased_date or self.today, reason=DECEASED_REASON
            )
            self.report.patients_closed += 1
        return patient

    def _patient_for(self, reference: str) -> Patient:
        pk = self._patients.get(reference)
        query = Patient.objects.select_related("centre")
        patient = (
            query.filter(pk=pk).first()
            if pk
            else query.filter(centre=self.centre, source_system=self.source_system, source_id=reference[:128]).first()
        )
        if patient is None:
            raise RowProblem(
                "subject.reference",
                "the Patient it refers to is neither in this import nor imported earlier for this centre",
                "not-found",
            )
        return patient

    # --- infusions
    def infusion_apply(self, record: InfusionRecord, siblings: Iterable[InfusionRecord] = ()) -> Infusion:
        if record.infusion_date < EARLIEST_INFUSION:
            raise RowProblem(
                "date", f"an infusion before {EARLIEST_INFUSION} predates every approved CAR-T product", "value"
            )
        patient = self._patient_for(record.patient_ref)
        self.report.patient_ids.add(patient.pk)
        source_id = record.source_id[:128]
        # The patient's infusions in one query (a handful at most): the three lookups below are made on them.
        stored = list(Infusion.objects.filter(patient=patient).order_by("pk"))
        existing = next((i for i in stored if i.source_system == self.source_system and i.source_id == source_id), None)
        product_code = record.product_code or self._product_from(record, patient, existing, siblings)
        product = self.products.get(product_code)
        if product is None:
            raise RowProblem("code", f"CAR-T product {product_code!r} is not in the catalogue", "code-invalid")
        if existing is None:
            existing = next(
                (i for i in stored if i.product_id == product.pk and i.infusion_date == record.infusion_date), None
            )
            if existing is not None:  # the same infusion, described by another resource
                self.report.infusions_unchanged += 1
                return existing
            infusion = Infusion.objects.create(
                patient=patient,
                product=product,
                infusion_date=record.infusion_date,
                lot_number=record.lot_number[:64],
                source_system=self.source_system,
                source_id=source_id,
            )
            self.report.infusions_created += 1
            self._plan(infusion, patient, "EHR import")
            if any(i.infusion_date < infusion.infusion_date for i in stored):
                planning.infusion_supersede_earlier(infusion)
            return infusion
        if existing.infusion_date == record.infusion_date and existing.product_id == product.pk:
            self.report.infusions_unchanged += 1
            return existing
        Infusion.objects.filter(pk=existing.pk).update(
            infusion_date=record.infusion_date, product=product, updated_at=timezone.now()
        )
        existing.refresh_from_db()
        self.report.infusions_replanned += 1
        self._plan(existing, patient, "EHR import: infusion date or product corrected")
        return existing

    def _product_from(self, record, patient, existing, siblings) -> str:
        """A generic administration code (CPT 38228, ICD-10-PCS XW033C3) names no product: find it elsewhere."""
        if existing is not None:
            return existing.product_id and existing.product.code
        for other in siblings:
            if (
                other.product_code
                and other.patient_ref == record.patient_ref
                and abs((other.infusion_date - record.infusion_date).days) <= 1
            ):
                return other.product_code
        stored = (
            Infusion.objects.filter(patient=patient, infusion_date=record.infusion_date)
            .select_related("product")
            .first()
        )
        if stored is not None:
            return stored.product.code
        raise RowProblem(
            "code",
            f"code {record.matched_code[1]} marks a CAR-T infusion but names no product; add the product's code "
            "(e.g. its HCPCS Q-code or NDC) or a MedicationAdministration of the product",
            "code-invalid",
        )

    def _plan(self, infusion: Infusion, patient: Patient, reason: str) -> None:
        if not patient.under_follow_up:
            return
        diff = planning.infusion_plan(infusion, reason=reason)
        self.report.visits_planned += len(diff.added)

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
        elif isinstance(item, ImportIssue):
            self.report.error(item)


def _refuse_nul(record) -> None:
    """A NUL character is refused here, whatever the database would do with it."""
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, str) and "\x00" in value:
            raise RowProblem(name, "null characters are not allowed", "value")


def _issue(item, problem: RowProblem | str) -> ImportIssue:
    if isinstance(problem, str):
        return ImportIssue(getattr(item, "entry", None), getattr(item, "line", None), "", problem, "conflict")
    return ImportIssue(
        getattr(item, "entry", None), getattr(item, "line", None), problem.field_name, problem.message, problem.code
    )


def _ordered(items: list) -> list:
    """Patients before the infusions that refer to them; issues and ignored items keep their place."""
    return sorted(items, key=lambda item: 0 if isinstance(item, PatientRecord) else 1)


# --------------------------------------------------------------------------------------------- FHIR Bundle
def bundle_import(
    data: bytes | str | dict,
    centre: TreatmentCentre,
    *,
    source_system: str = DEFAULT_SOURCE_SYSTEM,
    dry_run: bool = False,
) -> ImportReport:
    """Import a Bundle atomically. Raises ``FhirImportError`` (nothing saved) if any entry is refused."""
    report = ImportReport(dry_run=dry_run, format="bundle")
    result = parse_bundle(data, car_t_code_index(), max_bytes=import_max_bytes(), today=timezone.localdate())
    items = [*result.patients, *result.infusions, *result.ignored]
    report.lines = len(items)
    _atomic_apply(items, centre, source_system, report, dry_run)
    return report


# --------------------------------------------------------------------------------------------- NDJSON
def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    last_line = None
    for line, item in items:
        if len(batch) >= size and line != last_line:
            yield batch
            batch = []
        batch.append((line, item))
        last_line = line
    if batch:
        yield batch


def ndjson_import(
    lines: Iterable[bytes | str],
    centre: TreatmentCentre,
    *,
    source_system: str = DEFAULT_SOURCE_SYSTEM,
    dry_run: bool = False,
    batch_lines: int = DEFAULT_BATCH_LINES,
) -> ImportReport:
    """Import Bulk Data NDJSON line by line in constant memory; each batch of lines commits on its own.

    Problems are reported per line and do not stop the import. Patient lines must come before the lines that
    refer to them (a Bulk Data export's Patient file first), or have been imported earlier.
    """
    report = ImportReport(dry_run=dry_run, format="ndjson")
    codes = car_t_code_index()

    def counted(source):
        for raw in source:
            report.lines += 1
            yield raw

    parsed = parse_ndjson(counted(lines), codes, today=timezone.localdate(), medications={})
    importer = Importer(centre, source_system=source_system, report=report)

    def run() -> None:
        for batch in _batches(parsed, batch_lines):
            with transaction.atomic():
                _ndjson_batch(importer, batch)

    if dry_run:
        try:
            with transaction.atomic():
                run()
                raise _DryRun
        except _DryRun:
            pass
    else:
        run()
    return report


def _ndjson_batch(importer: Importer, batch: list[tuple[int, object]]) -> None:
    items = [item for _, item in batch]
    siblings = [item for item in items if isinstance(item, InfusionRecord)]
    for item in _ordered(items):
        try:
            with transaction.atomic():
                importer.apply(item, siblings)
        except RowProblem as problem:
            importer.report.error(_issue(item, problem))
        except (IntegrityError, DataError, lifecycle.TransitionError) as exc:
            logger.info("ndjson line %s refused: %s", getattr(item, "line", None), type(exc).__name__)
            importer.report.error(
                _issue(item, "cannot be stored: a duplicate identifier, or a value the database refuses")
            )


# --------------------------------------------------------------------------------------------- CSV
def csv_import(
    text: str,
    centre: TreatmentCentre,
    *,
    source_system: str = DEFAULT_SOURCE_SYSTEM,
    dry_run: bool = False,
) -> ImportReport:
    """Import a clinic CSV export atomically: any bad row rejects the file (every problem is listed)."""
    from surveillance.ehr_csv import parse_csv

    report = ImportReport(dry_run=dry_run, format="csv")
    products = dict(product_names())
    for code, brand in CarTProduct.objects.values_list("code", "brand"):
        products[code] = products[brand] = code
    parsed = list(parse_csv(io.StringIO(text, newline=""), products, today=timezone.localdate()))
    problems = [item for _, item in parsed if isinstance(item, ImportIssue)]
    if problems:
        raise FhirImportError(problems)
    items = [item for _, item in parsed]
    report.lines = len({line for line, _ in parsed})
    _atomic_apply(items, centre, source_system, report, dry_run)
    return report


def _atomic_apply(items: list, centre, source_system: str, report: ImportReport, dry_run: bool) -> None:
    """Apply all items in one transaction; any refused item rolls everything back (``FhirImportError``)."""
    infusions = [item for item in items if isinstance(item, InfusionRecord)]
    try:
        with transaction.atomic():
            importer = Importer(centre, source_system=source_system, report=report)
            problems: list[ImportIssue] = []
            for item in _ordered(items):
                try:
                    with transaction.atomic():
                        importer.apply(item, infusions)
                except RowProblem as problem:
                    problems.append(_issue(item, problem))
                except (IntegrityError, DataError, lifecycle.TransitionError) as exc:
                    logger.info("import item refused: %s", type(exc).__name__)
                    problems.append(
                        _issue(item, "cannot be stored: a duplicate identifier, or a value the database refuses")
                    )
            if problems:
                raise FhirImportError(problems)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass


def looks_like_bundle(head: bytes) -> bool:
    """Whether the start of a body is one JSON object spanning lines (a Bundle) rather than NDJSON."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first_line = text.split(b"\n", 1)[0].strip()
    return text.startswith(b"{") and not (first_line.startswith(b"{") and first_line.endswith(b"}"))


def ndjson_lines(stream, max_bytes: int, already: int = 0) -> Iterator[bytes]:
    """Lines of a file-like stream; raises ``FhirImportError`` past ``max_bytes`` (lines read so far are kept)."""
    total = already
    for line in stream:
        total += len(line)
        if total > max_bytes:
            raise FhirImportError([ImportIssue(None, None, "", f"the upload is over {max_bytes} bytes", "too-long")])
        yield line
