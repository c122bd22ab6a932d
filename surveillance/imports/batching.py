"""Bulk Data NDJSON in batches of lines: each committed on its own, problems reported per line.

A batch is first applied without savepoints, its new rows inserted a statement per table; only should the
database refuse one of its writes is it applied again line by line, each line in a savepoint, so that the refused
line is reported by its number and the others are kept. Either way the batch's patients and infusions are looked
up with a few queries (``BatchLookup``) and the first infusions of its patients are planned together at its end
(``BatchWrites``). Each attempt applies the records (``imports.apply``) with a context of its own, which counts in
the import's only once the batch commits.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from django.db import transaction

from surveillance.care import planning
from surveillance.imports.apply import (
    PLAN_REASON,
    REFUSED,
    ApplyContext,
    RowProblem,
    clinical_apply,
    issue_of,
    issue_refused,
    patient_stored,
    phases,
    record_apply,
    risk_flags_apply,
)
from surveillance.imports.fhir.records import ClinicalResource, InfusionRecord, PatientRecord
from surveillance.imports.identity import SourceKey, record_mrn
from surveillance.imports.lookup import BatchLookup
from surveillance.imports.report import ImportReport
from surveillance.models import Infusion, Patient

logger = logging.getLogger("surveillance.imports.batching")

DEFAULT_BATCH_LINES = 500


def batches(items: Iterator, size: int) -> Iterator[list]:
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


def batch_commit(
    ctx: ApplyContext,
    batch: list[tuple[int, object]],
    on_batch: Callable[[ImportReport, int], None] | None = None,
) -> None:
    """Apply a batch of lines and commit it: without savepoints, or, should the database refuse a write, again
    with a savepoint per line, so that the refused line is reported by its number and the others are kept. Once
    committed, what the batch did counts in the import's report and its patients are known to the next batches.
    ``on_batch`` runs inside the batch's transaction (``ndjson_import``)."""
    try:
        with transaction.atomic():
            applied = batch_apply(ctx, batch, careful=False)
            if on_batch is not None:
                on_batch(applied.report, batch[-1][0])
    except REFUSED as exc:
        logger.info("ndjson lines %s-%s applied again line by line: %s", batch[0][0], batch[-1][0], type(exc).__name__)
        with transaction.atomic():
            applied = batch_apply(ctx, batch, careful=True)
            if on_batch is not None:
                on_batch(applied.report, batch[-1][0])
    ctx.known.update(applied.known.maps[0])
    ctx.report.merge(applied.report)


def batch_apply(ctx: ApplyContext, batch: list[tuple[int, object]], *, careful: bool) -> ApplyContext:
    """Apply a batch of lines inside the caller's transaction; returns the batch's context (its report, the
    patients it stored), for the caller to count once the transaction commits.

    ``careful``: each line in a savepoint, its rows written at once, so that a line the database refuses is
    reported and the others kept. Otherwise no savepoints, and new patients and infusions are inserted a statement
    per table: a refusal then fails the whole batch, which ``batch_commit`` applies again carefully.
    """
    items = [item for _, item in batch]
    records, flags, clinical = phases(items)
    siblings = [item for item in items if isinstance(item, InfusionRecord)]
    writes = BatchWrites(queue_creates=not careful)
    applied = replace(
        ctx,
        report=ImportReport(dry_run=ctx.report.dry_run, format=ctx.report.format),
        known=ChainMap({}, ctx.known),
        lookup=_lookup_load(ctx, items),
        writes=writes,
    )
    for item in records:
        if careful:
            applied = _item_careful(applied, item, siblings)
            continue
        try:
            record_apply(item, applied, siblings)
        except RowProblem as problem:  # refused before writing anything
            applied.report.error(issue_of(item, problem))
    writes.item_begin()
    writes.plans_flush(applied)
    for issue in risk_flags_apply(flags, applied):
        applied.report.error(issue)
    clinical_apply(clinical, applied)
    return applied


def _lookup_load(ctx: ApplyContext, items: list) -> BatchLookup:
    """The batch's patients (by source identity or MRN) and the patients its infusions and clinical resources
    (results, encounters) refer to, looked up at once."""
    patients = [item for item in items if isinstance(item, PatientRecord)]
    return BatchLookup.load(
        ctx.centre,
        {(ctx.source_of(record), record.source_id) for record in patients},
        {record_mrn(record) for record in patients},
        {ctx.patient_key(item) for item in items if isinstance(item, InfusionRecord | ClinicalResource)},
        ctx.known,
    )


def _item_careful(ctx: ApplyContext, item, siblings: list[InfusionRecord]) -> ApplyContext:
    """Apply one record in a savepoint: one the database refuses is reported, and the batch goes on. Returns the
    context for the next records: without the batch's look-ups once a rolled-back record may have made them
    stale."""
    assert ctx.writes is not None
    ctx.writes.item_begin()
    try:
        with transaction.atomic():
            record_apply(item, ctx, siblings)
    except RowProblem as problem:  # refused before writing anything
        ctx.writes.item_rolled_back(ctx.report)
        ctx.report.error(issue_of(item, problem))
    except REFUSED as exc:
        ctx.writes.item_rolled_back(ctx.report)
        ctx.report.error(issue_refused(item, exc))
        return replace(ctx, lookup=None)
    return ctx


@dataclass(slots=True)
class BatchWrites:
    """The writes one attempt at an NDJSON batch puts off: its new patients and infusions, inserted a statement
    per table (``queue_creates``: only without savepoints, where a refusal fails the batch anyway), and the plans of
    its patients' first infusions, written together (``plans_flush``).

    Stateful because it accumulates while the batch's records are applied: the record functions hand it their
    rows (``ApplyContext.writes``) and flush it before anything that must see them (a look-up in the database, a
    re-plan, a closure, the batch's end). It lives and dies with one attempt at one batch; a line rolled back to
    its savepoint takes with it the plans flushed while it was applied, which are put back (``item_rolled_back``).
    """

    queue_creates: bool
    patients: list[tuple[Patient, SourceKey]] = field(default_factory=list)
    queued: set[tuple[str, object]] = field(default_factory=set)  # ("source", key) and ("mrn", value) of those
    infusions: list[Infusion] = field(default_factory=list)
    plans: list[tuple[Infusion, InfusionRecord]] = field(default_factory=list)  # stored, to plan
    flushed: list[tuple[Infusion, InfusionRecord]] = field(default_factory=list)  # planned during the current line
    flushed_visits: int = 0

    # --- new rows
    def patient_queued(self, key: SourceKey, mrn: str) -> bool:
        return bool({("source", key), ("mrn", mrn)} & self.queued)

    def patient_queue(self, patient: Patient, key: SourceKey) -> None:
        self.patients.append((patient, key))
        self.queued |= {("source", key), ("mrn", patient.mrn)}

    def infusion_defer(self, infusion: Infusion, record: InfusionRecord) -> None:
        """A patient's first infusion: stored now or with the batch's others, planned at the end of the batch."""
        if self.queue_creates:
            self.infusions.append(infusion)
        else:
            infusion.save(force_insert=True)
        self.plans.append((infusion, record))

    def patients_flush(self, ctx: ApplyContext) -> None:
        patients, self.patients, self.queued = self.patients, [], set()
        if patients:
            Patient.objects.bulk_create([patient for patient, _ in patients])
            for patient, key in patients:
                patient_stored(ctx, patient, key)

    def infusions_flush(self) -> None:
        infusions, self.infusions = self.infusions, []
        if infusions:
            Infusion.objects.bulk_create(infusions)

    # --- plans
    def plans_flush(self, ctx: ApplyContext) -> None:
        """Insert the queued rows, then plan the infusions put off so far, in bulk (``planning.infusions_plan_new``).

        Should that fail, each is planned on its own, and one that cannot be is reported by its line (and its row
        deleted), as when infusions were planned one by one.
        """
        self.patients_flush(ctx)
        self.infusions_flush()
        pending, self.plans = self.plans, []
        if not pending:
            return
        self.flushed += pending
        before = ctx.report.visits_planned
        try:
            _plans_write(ctx, pending)
        finally:
            self.flushed_visits += ctx.report.visits_planned - before

    def item_begin(self) -> None:
        self.flushed, self.flushed_visits = [], 0

    def item_rolled_back(self, report: ImportReport) -> None:
        """The current line's savepoint was rolled back: so were the plans flushed in it, which are pending again."""
        self.plans = self.flushed + self.plans
        report.visits_planned -= self.flushed_visits
        self.item_begin()


def _plans_write(ctx: ApplyContext, pending: list[tuple[Infusion, InfusionRecord]]) -> None:
    try:
        with transaction.atomic():
            diffs = planning.infusions_plan_new([infusion for infusion, _ in pending], reason=PLAN_REASON)
    except REFUSED:
        for infusion, record in pending:
            try:
                with transaction.atomic():
                    ctx.report.visits_planned += len(planning.infusion_plan(infusion, reason=PLAN_REASON).added)
            except REFUSED as exc:
                Infusion.objects.filter(pk=infusion.pk).delete()
                if ctx.lookup is not None:  # the look-up held it among the patient's infusions
                    ctx.lookup.infusions_forget(infusion.patient)
                ctx.report.error(issue_refused(record, exc))
        return
    ctx.report.visits_planned += sum(len(diff.added) for diff in diffs)
