"""Recording a visit's results: the one writer of ``VisitResult`` rows, for the admin, the API and an EHR import.

``results_record`` checks every entry before it writes any (a bad value or unit refuses the whole call with a
message per entry and field, nothing half-saved), then writes one row per assessment, or per analyte of a blood
count, with its history row and audit entry in the same transaction. A result a person recorded is never replaced
by machine data (an EHR value, or one an integration posted through the API with its token): the machine's is
counted as kept aside. Between two machine values for the same analyte, whichever their source, the later one (by
its effective date) stands: an integration's result is data like the EHR's, and the EHR's later Observation
updates it.

``visit_record`` is recording a visit done with its results in one step, optionally with "done, nothing abnormal"
for every assessment not otherwise recorded: the admin's one-click completion and the API's ``complete``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_entries_insert, audit_entry_build
from surveillance.care import lifecycle
from surveillance.db import bulk_rows
from surveillance.models import AuditEntry, FollowUpVisit, ResultOutcome, ResultSource, VisitChange, VisitResult
from surveillance.seeds.analytes import Analyte, analyte_for_loinc, analyte_units, analytes
from surveillance.signals.review import ruleset_current
from surveillance.signals.rules import LabResult

MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class ResultEntry:
    """One result as an entry point hands it over. A blood-count analyte names its ``analyte`` (or only its
    ``loinc``) and carries ``value`` and ``unit``; any other assessment carries an ``outcome``."""

    assessment: str
    outcome: str = ""
    analyte: str = ""
    loinc: str = ""
    value: float | None = None
    unit: str = ""
    reference_low: float | None = None
    reference_high: float | None = None
    effective_on: dt.date | None = None
    source_id: str = ""
    note: str = ""


class ResultsRefused(Exception):
    """Entries that cannot be recorded: ``problems`` maps ``<index>.<field>`` to its messages."""

    def __init__(self, problems: dict[str, list[str]]):
        super().__init__("; ".join(f"{where}: {' '.join(messages)}" for where, messages in problems.items()))
        self.problems = problems


@dataclass
class ResultsReport:
    """What one call did, in counts and ids only (safe to log)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_person: int = 0  # machine values (EHR, integration) not written over a person's result
    result_ids: list[int] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.created + self.updated


def result_units(signal_units: Mapping | None = None) -> Mapping:
    """The units each analyte's quantity is accepted in: the signal rules' table (``signal_units``, read here if
    not given) for the quantities the rules judge, the analytes catalogue's own table for the rest."""
    if signal_units is None:
        signal_units = ruleset_current()[1].units
    return {**analyte_units(), **signal_units}


def canonical_unit(analyte: Analyte) -> str:
    """The unit the analyte is compared and converted in: what a form offers first."""
    quantity = result_units().get(analyte.quantity)
    return quantity.canonical if quantity else ""


def _interpretation(entry: ResultEntry) -> str:
    """The outcome given, else what the reference range says of the value, else unknown ("")."""
    if entry.outcome:
        return entry.outcome
    if entry.value is None:
        return ""
    low, high = entry.reference_low, entry.reference_high
    if low is None and high is None:
        return ""
    outside = (low is not None and entry.value < low) or (high is not None and entry.value > high)
    return ResultOutcome.ABNORMAL if outside else ResultOutcome.NORMAL


class _Checker:
    """The checks of one call's entries against the visit and the catalogues; collects every problem."""

    def __init__(self, visit: FollowUpVisit, source: str, units: Mapping | None = None):
        self.visit = visit
        self.source = source
        self.problems: dict[str, list[str]] = {}
        self._units = units
        self.today = timezone.localdate()

    def problem(self, index: int, name: str, message: str) -> None:
        self.problems.setdefault(f"{index}.{name}", []).append(message)

    def unit_converts(self, analyte: Analyte, unit: str) -> bool:
        if self._units is None:
            self._units = result_units()
        quantity = self._units.get(analyte.quantity)
        return quantity is not None and quantity.convert(1.0, unit) is not None

    def analyte(self, index: int, entry: ResultEntry) -> Analyte | None:
        by_code = analytes().get(entry.analyte) if entry.analyte else None
        by_loinc = analyte_for_loinc(entry.loinc) if entry.loinc else None
        if entry.analyte and by_code is None:
            self.problem(index, "analyte", f"{entry.analyte!r} is not a known analyte")
        if entry.loinc and by_loinc is None:
            self.problem(index, "loinc", f"LOINC {entry.loinc} is not an analyte recorded here")
        if by_code and by_loinc and by_code != by_loinc:
            self.problem(index, "loinc", f"LOINC {entry.loinc} is not {by_code.code}")
        return by_code or by_loinc

    def check(self, index: int, entry: ResultEntry) -> ResultEntry:
        """The entry as it will be stored (analyte resolved, outcome interpreted); problems noted on the way."""
        if entry.assessment not in (self.visit.assessments or []):
            self.problem(index, "assessment", f"{entry.assessment!r} is not an assessment this visit asks for")
        if entry.outcome and entry.outcome not in ResultOutcome.values:
            self.problem(index, "outcome", f"must be one of {', '.join(ResultOutcome.values)}")
        for name in ("value", "reference_low", "reference_high"):
            number = getattr(entry, name)
            if number is not None and not math.isfinite(number):
                self.problem(index, name, "must be a finite number")
        if len(entry.note) > MAX_NOTE:
            self.problem(index, "note", f"at most {MAX_NOTE} characters")
        if any("\x00" in text for text in (entry.note, entry.unit, entry.source_id, entry.assessment)):
            self.problem(index, "note", "null characters are not allowed")
        if self.source == ResultSource.EHR and not entry.source_id:
            self.problem(index, "source_id", "an EHR result names the record it came from")
        if entry.effective_on is not None and entry.effective_on > self.today:
            self.problem(index, "effective_on", "cannot be in the future")
        analyte = self.analyte(index, entry) if (entry.analyte or entry.loinc) else None
        if analyte is None:
            if not (entry.analyte or entry.loinc):
                if entry.value is not None or entry.unit:
                    self.problem(index, "value", "a value needs the analyte it measures (analyte or loinc)")
                if not entry.outcome:
                    self.problem(index, "outcome", "required: how the assessment went")
            return entry
        if entry.assessment not in analyte.assessments:
            self.problem(index, "analyte", f"{analyte.code} is not part of {entry.assessment}")
        if entry.outcome == ResultOutcome.NOT_DONE:
            if entry.value is not None:
                self.problem(index, "value", "a result not done has no value")
        elif entry.value is None:
            self.problem(index, "value", "required for an analyte (or the outcome not_done)")
        elif not entry.unit:
            self.problem(index, "unit", "required with a value")
        elif not self.unit_converts(analyte, entry.unit):
            self.problem(index, "unit", f"{entry.unit!r} is not a unit {analyte.code} is recorded in")
        low, high = entry.reference_low, entry.reference_high
        if low is not None and high is not None and low > high:
            self.problem(index, "reference_low", "must not be above reference_high")
        return ResultEntry(
            entry.assessment,
            _interpretation(entry),
            analyte.code,
            entry.loinc or analyte.loinc[0],
            entry.value,
            entry.unit if entry.value is not None else "",
            low if entry.value is not None else None,
            high if entry.value is not None else None,
            entry.effective_on,
            entry.source_id,
            entry.note,
        )


#: The columns an entry writes, in the order of ``ResultEntry``'s fields (``assessment`` and ``analyte`` key the row).
_VALUE_FIELDS = (
    "outcome",
    "loinc",
    "value",
    "unit",
    "reference_low",
    "reference_high",
    "effective_on",
    "source_id",
    "note",
)


#: The columns of a new row, as ``results_write`` inserts them (``bulk_rows``: no model instance per row).
_NEW_ROW_COLUMNS = (
    "visit_id",
    "assessment",
    "analyte",
    *_VALUE_FIELDS,
    "source",
    "recorded_by_id",
    "recorded_by_label",
    "recorded_at",
)
#: The columns of a visit's history row.
_CHANGE_COLUMNS = ("visit_id", "by_id", "action", "after")


def _supersedes(entry: ResultEntry, row: VisitResult, source: str) -> bool:
    """Whether an entry may replace a stored row: a person's word always; machine data (the EHR's, an
    integration's) never over a person's, and over machine data only when it is at least as recent."""
    if source == ResultSource.PERSON:
        return True
    if row.source == ResultSource.PERSON:
        return False
    return row.effective_on is None or entry.effective_on is None or entry.effective_on >= row.effective_on


def results_record(
    visit: FollowUpVisit,
    results: Sequence[ResultEntry],
    *,
    actor=None,
    source: str = ResultSource.PERSON,
    source_label: str = "",
    now: dt.datetime | None = None,
) -> ResultsReport:
    """Record ``results`` on ``visit`` (see the module's docstring); ``ResultsRefused`` before writing anything.
    ``source_label`` names an integration (``ResultSource.INTEGRATION``) as the audit trail does."""
    entries = results_check(visit, results, source)
    return results_write([(visit, entries)], actor=actor, source=source, source_label=source_label, now=now)[0]


def results_check(
    visit: FollowUpVisit, results: Sequence[ResultEntry], source: str, units: Mapping | None = None
) -> list[ResultEntry]:
    """The entries as they will be stored (``_Checker.check``); ``ResultsRefused`` with every problem found.
    ``units``: ``result_units()``, read once for a batch of visits (read here if not given)."""
    if source not in ResultSource.values:
        raise ValueError(f"unknown result source {source!r}")
    checker = _Checker(visit, source, units)
    entries = [checker.check(index, entry) for index, entry in enumerate(results)]
    keys = [(entry.assessment, entry.analyte) for entry in entries]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            checker.problem(index, "analyte" if key[1] else "assessment", "given twice in the same call")
    if checker.problems:
        raise ResultsRefused(checker.problems)
    return entries


def results_write(
    checked: Sequence[tuple[FollowUpVisit, Sequence[ResultEntry]]],
    *,
    actor=None,
    source: str,
    source_label: str = "",
    now: dt.datetime | None = None,
) -> list[ResultsReport]:
    """Store the checked entries (``results_check``) of one visit or of many, a report for each: the stored rows
    read in one query, the new ones inserted in one statement (a blood count is seven rows, and an EHR import
    records thousands: given as column values, ``bulk_rows``), and a history row and audit entry for each visit
    written to."""
    if source == ResultSource.INTEGRATION and not source_label:
        raise ValueError("an integration's results name the integration (source_label)")
    if not checked:
        return []
    now = now or timezone.now()
    actor_id = actor.pk if actor is not None else None
    label = source_label[:128]
    reports = [ResultsReport() for _ in checked]
    with transaction.atomic():
        stored = {
            (row.visit_id, row.assessment, row.analyte): row
            for row in VisitResult.objects.select_for_update().filter(visit__in=[visit.pk for visit, _ in checked])
        }
        created: list[list[tuple]] = [[] for _ in checked]
        for (visit, entries), report, new in zip(checked, reports, created, strict=True):
            for entry in entries:
                row = stored.get((visit.pk, entry.assessment, entry.analyte))
                if row is None:
                    values = (getattr(entry, name) for name in _VALUE_FIELDS)
                    new.append((visit.pk, entry.assessment, entry.analyte, *values, source, actor_id, label, now))
                elif not _supersedes(entry, row, source):
                    report.kept_person += row.source == ResultSource.PERSON
                    report.unchanged += row.source != ResultSource.PERSON
                elif all(getattr(row, name) == getattr(entry, name) for name in _VALUE_FIELDS) and (
                    row.source,
                    row.recorded_by_label,
                ) == (source, label):
                    report.unchanged += 1
                else:
                    for name in _VALUE_FIELDS:
                        setattr(row, name, getattr(entry, name))
                    row.source, row.recorded_by, row.recorded_by_label, row.recorded_at = source, actor, label, now
                    row.save()
                    report.updated += 1
                    report.result_ids.append(row.pk)
        ids = iter(bulk_rows.rows_insert_numbered(VisitResult, _NEW_ROW_COLUMNS, [r for rows in created for r in rows]))
        changes: list[tuple] = []
        entries: list[AuditEntry] = []
        for (visit, _), report, new in zip(checked, reports, created, strict=True):
            report.created += len(new)
            report.result_ids += [next(ids) for _ in new]
            if not report.written:
                continue
            summary = {"source": source, "created": report.created, "updated": report.updated}
            if source_label:
                summary["recorded_by"] = source_label
            changes.append((visit.pk, actor_id, "results_recorded", summary))
            entries.append(
                audit_entry_build(
                    "results_recorded",
                    by=actor,
                    object_type="followupvisit",
                    object_id=visit.pk,
                    patient_id=visit.infusion.patient_id,
                    changes={**summary, "results": report.result_ids},
                )
            )
        bulk_rows.rows_insert(VisitChange, _CHANGE_COLUMNS, changes)
        audit_entries_insert(entries)
    return reports


def lab_history(infusion_ids: Sequence[int], loincs: Sequence[str]) -> dict[int, tuple[LabResult, ...]]:
    """The blood results already on file for these infusions' visits, under the given LOINC codes, as the signal
    rules read them (``ClinicalRecords.history``), by infusion; one query for an import batch's patients.

    A result from the EHR keeps its source record as its reference, so the same Observation imported again is
    recognised; one a person entered is referred to by its row."""
    rows = (
        VisitResult.objects.filter(
            visit__infusion_id__in=infusion_ids,
            loinc__in=loincs,
            value__isnull=False,
            effective_on__isnull=False,
        )
        .order_by()
        .values_list(
            "visit__infusion_id",
            "pk",
            "loinc",
            "value",
            "unit",
            "effective_on",
            "source",
            "source_id",
            "reference_low",
            "reference_high",
            "outcome",
        )
    )
    history: dict[int, list[LabResult]] = {}
    for infusion_id, pk, loinc, value, unit, on, source, source_id, low, high, outcome in rows:
        reference = source_id if source == ResultSource.EHR and source_id else f"VisitResult/{pk}"
        interpretation = outcome if outcome in (ResultOutcome.NORMAL, ResultOutcome.ABNORMAL) else ""
        history.setdefault(infusion_id, []).append(
            LabResult(loinc, value, unit, on, reference, low, high, interpretation=interpretation)
        )
    return {infusion_id: tuple(results) for infusion_id, results in history.items()}


def remaining_as_normal(visit: FollowUpVisit, given: Sequence[ResultEntry]) -> list[ResultEntry]:
    """ "Done, nothing abnormal" for each assessment the visit asks for that neither ``given`` nor a stored row
    records: what a coordinator means by one click once the few abnormal findings are entered."""
    recorded = {entry.assessment for entry in given}
    recorded |= set(VisitResult.objects.filter(visit=visit).values_list("assessment", flat=True))
    return [ResultEntry(code, ResultOutcome.NORMAL) for code in visit.assessments or [] if code not in recorded]


def visit_record(
    visit: FollowUpVisit,
    *,
    completed_on: dt.date,
    results: Sequence[ResultEntry] = (),
    rest_normal: bool = False,
    notes: dict | None = None,
    actor=None,
    source: str = ResultSource.PERSON,
    source_label: str = "",
    now: dt.datetime | None = None,
) -> tuple[FollowUpVisit, ResultsReport]:
    """A person (or an integration, ``source`` and ``source_label``) records the visit done with its results, in
    one transaction: a refused result or a visit someone else settled first leaves nothing written.
    ``rest_normal`` adds "done, nothing abnormal" for the rest."""
    with transaction.atomic():
        entries = [*results, *(remaining_as_normal(visit, results) if rest_normal else [])]
        report = results_record(visit, entries, actor=actor, source=source, source_label=source_label, now=now)
        visit = lifecycle.visit_mark_completed(visit, completed_on=completed_on, results=notes, by=actor, now=now)
    return visit, report
