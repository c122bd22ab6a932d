"""What an import did (or, in a dry run, would do): counts and the problems, by line or entry."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from surveillance.imports.fhir.records import ImportIssue

MAX_REPORTED_ERRORS = 1000


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
    risk_flags_recorded: int = 0
    signals_raised: int = 0
    visits_completed: int = 0
    visits_booked: int = 0
    visit_results_recorded: int = 0
    ignored: Counter = field(default_factory=Counter)
    errors: list[ImportIssue] = field(default_factory=list)
    error_count: int = 0
    lines: int = 0
    patient_ids: set[int] = field(default_factory=set)

    def error(self, issue: ImportIssue) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(issue)

    def merge(self, other: ImportReport) -> None:
        """Add what a batch did (``other``, its own report) to this one, as if reported here."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ignored.update(other.ignored)
        self.errors += other.errors[: MAX_REPORTED_ERRORS - len(self.errors)]
        self.error_count += other.error_count
        self.patient_ids |= other.patient_ids

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
            "risk_flags_recorded": self.risk_flags_recorded,
            "signals_raised": self.signals_raised,
            "visits_reconciled": {
                "completed": self.visits_completed,
                "booked": self.visits_booked,
                "results_recorded": self.visit_results_recorded,
            },
            "ignored": {"count": sum(self.ignored.values()), "by_reason": dict(sorted(self.ignored.items()))},
            "lines": self.lines,
            "error_count": self.error_count,
            "errors": [
                {"line": i.line, "entry": i.entry, "field": i.expression() or "", "message": i.message, "code": i.code}
                for i in self.errors
            ],
        }

    def reconciled(self, outcome) -> None:
        """Count what the visit reconciliation (``care.reconcile.ReconcileReport``) did for one patient."""
        self.visits_completed += outcome.completed
        self.visits_booked += outcome.booked
        self.visit_results_recorded += outcome.results_recorded

    @property
    def changed(self) -> bool:
        return bool(
            self.patients_created
            or self.patients_updated
            or self.patients_closed
            or self.infusions_created
            or self.infusions_replanned
            or self.risk_flags_recorded
        )


COUNTERS = (
    "patients_created",
    "patients_updated",
    "patients_unchanged",
    "patients_closed",
    "infusions_created",
    "infusions_replanned",
    "infusions_unchanged",
    "visits_planned",
    "risk_flags_recorded",
    "signals_raised",
    "visits_completed",
    "visits_booked",
    "visit_results_recorded",
)
