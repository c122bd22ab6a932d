"""Import EHR exports (FHIR Bundle, Bulk Data NDJSON, CSV) into patients and infusions, and plan their schedules.

The entry points. The parsers (``imports.fhir``, ``imports.ehr_csv``) turn the input into validated records;
``imports.identity`` decides who a Patient is; ``imports.apply`` writes the rows:

- a patient is the same patient when its source identity (centre, source system, resource id) or its MRN matches,
  never by a bare id (``imports.identity``); a record without an MRN keeps its resource id as MRN;
- an infusion is the same infusion when its source identity matches, or when the patient already has an infusion of
  the same product on the same date (a Procedure and a MedicationAdministration often describe one infusion);
- a new infusion is planned at once (the import is the instruction, so no preview is confirmed); a changed infusion
  date re-plans it as the planner does; a deceased patient's follow-up is closed.

Importing the same export twice changes nothing. A Bundle (and a CSV) is atomic: any problem (in parsing or in
applying) rejects it whole with an OperationOutcome naming the entry and the element; the Patients refused for
their identity still go on the identity review worklist. NDJSON is applied in batches of lines, each committed on
its own, and problems are reported per line (``imports.batching``). ``dry_run`` applies everything inside a
transaction that is rolled back, so the report says exactly what would happen.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_acting_as
from surveillance.imports.apply import (
    DEFAULT_SOURCE_SYSTEM,
    REFUSED,
    ApplyContext,
    RowProblem,
    clinical_apply,
    issue_of,
    issue_refused,
    phases,
    record_apply,
    risk_flags_apply,
)
from surveillance.imports.batching import DEFAULT_BATCH_LINES, batch_commit, batches
from surveillance.imports.fhir.codes import CarTCodeIndex, product_names
from surveillance.imports.fhir.parse import parse_bundle, parse_ndjson
from surveillance.imports.fhir.records import FhirImportError, ImportIssue, InfusionRecord
from surveillance.imports.identity import identity_reviews_open
from surveillance.imports.report import ImportReport
from surveillance.models import CarTProduct, ProductCode, TreatmentCentre
from surveillance.models.audit import AuditActor

__all__ = ["DEFAULT_SOURCE_SYSTEM", "ImportReport", "bundle_import", "csv_import", "ndjson_import"]


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


# --------------------------------------------------------------------------------------------- FHIR Bundle
@audit_acting_as(AuditActor.EHR_IMPORT)
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
    items = [*result.patients, *result.infusions, *result.risk_flags, *result.clinical, *result.ignored]
    report.lines = len(items)
    _atomic_apply(items, centre, source_system, report, dry_run)
    return report


# --------------------------------------------------------------------------------------------- NDJSON
@audit_acting_as(AuditActor.EHR_IMPORT)
def ndjson_import(
    lines: Iterable[bytes | str],
    centre: TreatmentCentre,
    *,
    source_system: str = DEFAULT_SOURCE_SYSTEM,
    dry_run: bool = False,
    batch_lines: int = DEFAULT_BATCH_LINES,
    start_line: int = 1,
    on_batch: Callable[[ImportReport, int], None] | None = None,
) -> ImportReport:
    """Import Bulk Data NDJSON line by line in constant memory; each batch of lines commits on its own.

    Problems are reported per line and do not stop the import. Patient lines must come before the lines that
    refer to them (a Bulk Data export's Patient file first), or have been imported earlier.

    ``start_line``: the number of the first line given (an import resumed after its last committed line).
    ``on_batch(batch_report, last_line)`` is called inside each batch's transaction, once the batch is applied, so
    that what it records (an import job's progress) commits with the batch or not at all; it may raise to refuse
    the batch.
    """
    report = ImportReport(dry_run=dry_run, format="ndjson")
    codes = car_t_code_index()

    def counted(source):
        for raw in source:
            report.lines += 1
            yield raw

    parsed = parse_ndjson(counted(lines), codes, start_line=start_line, today=timezone.localdate(), medications={})
    ctx = ApplyContext.for_import(centre, source_system=source_system, report=report)

    def run() -> None:
        for batch in batches(parsed, batch_lines):
            batch_commit(ctx, batch, on_batch)

    if dry_run:
        try:
            with transaction.atomic():
                run()
                raise _DryRun
        except _DryRun:
            pass
    else:
        run()
        identity_reviews_open(centre, ctx.conflicts.values())
    return report


# --------------------------------------------------------------------------------------------- CSV
@audit_acting_as(AuditActor.EHR_IMPORT)
def csv_import(
    data: bytes | str,
    centre: TreatmentCentre,
    *,
    source_system: str = DEFAULT_SOURCE_SYSTEM,
    dry_run: bool = False,
) -> ImportReport:
    """Import a clinic CSV export atomically: any bad row rejects the file (every problem is listed).

    ``data`` as sent (bytes) is decoded here, so that a file that is not UTF-8 is reported by its line.
    """
    from surveillance.imports.ehr_csv import csv_decode, parse_csv

    text = csv_decode(data) if isinstance(data, bytes) else data

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
    records, flags, clinical = phases(items)
    infusions = [item for item in items if isinstance(item, InfusionRecord)]
    ctx = ApplyContext.for_import(centre, source_system=source_system, report=report)
    try:
        with transaction.atomic():
            problems: list[ImportIssue] = []
            for item in records:
                try:
                    with transaction.atomic():
                        record_apply(item, ctx, infusions)
                except RowProblem as problem:
                    problems.append(issue_of(item, problem))
                except REFUSED as exc:
                    problems.append(issue_refused(item, exc))
            problems += risk_flags_apply(flags, ctx)
            clinical_apply(clinical, ctx)
            if problems:
                raise FhirImportError(problems)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except FhirImportError:
        if not dry_run:  # the entries refused for their identity wait for a coordinator, though nothing was saved
            identity_reviews_open(centre, ctx.conflicts.values())
        raise


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
