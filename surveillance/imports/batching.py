"""Bulk Data NDJSON in batches of lines: each committed on its own, problems reported per line.

A batch is first applied without savepoints, its new rows inserted a statement per table; only should the
database refuse one of its writes is it applied again line by line, each line in a savepoint, so that the refused
line is reported by its number and the others are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from django.db import transaction

from surveillance.imports.apply import REFUSED, Importer, RowProblem, issue_of, ordered
from surveillance.imports.fhir.records import InfusionRecord
from surveillance.imports.report import ImportReport

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
    importer: Importer, batch: list[tuple[int, object]], on_batch: Callable[[ImportReport, int], None] | None = None
) -> None:
    """Apply a batch of lines and commit it: without savepoints, or, should the database refuse a write, again
    with a savepoint per line, so that the refused line is reported by its number and the others are kept.
    ``on_batch`` runs inside the batch's transaction (``ndjson_import``)."""
    try:
        with transaction.atomic():
            importer.batch_begin(careful=False)
            _ndjson_batch(importer, batch, careful=False)
            if on_batch is not None:
                on_batch(importer.report, batch[-1][0])
    except REFUSED as exc:
        logger.info("ndjson lines %s-%s applied again line by line: %s", batch[0][0], batch[-1][0], type(exc).__name__)
        with transaction.atomic():
            importer.batch_begin(careful=True)
            _ndjson_batch(importer, batch, careful=True)
            if on_batch is not None:
                on_batch(importer.report, batch[-1][0])
    importer.batch_commit()


def _ndjson_batch(importer: Importer, batch: list[tuple[int, object]], *, careful: bool) -> None:
    items = [item for _, item in batch]
    siblings = [item for item in items if isinstance(item, InfusionRecord)]
    importer.batch_prepare(items)
    for item in ordered(items):
        if careful:
            _ndjson_item_careful(importer, item, siblings)
            continue
        try:
            importer.apply(item, siblings)
        except RowProblem as problem:  # refused before writing anything
            importer.report.error(issue_of(item, problem))
    importer.item_begin()
    importer.plans_flush()
    for record, problem in importer.flags_apply():
        importer.report.error(issue_of(record, problem))
    importer.clinical_apply()
    importer.cache_drop()


def _ndjson_item_careful(importer: Importer, item, siblings: list[InfusionRecord]) -> None:
    """Apply one record in a savepoint: one the database refuses is reported, and the batch goes on."""
    importer.item_begin()
    try:
        with transaction.atomic():
            importer.apply(item, siblings)
    except RowProblem as problem:
        importer.item_rolled_back(changed=False)  # refused before writing anything
        importer.report.error(issue_of(item, problem))
    except REFUSED as exc:
        logger.info("ndjson line %s refused: %s", getattr(item, "line", None), type(exc).__name__)
        importer.item_rolled_back()
        importer.report.error(
            issue_of(item, "cannot be stored: a duplicate identifier, or a value the database refuses")
        )
