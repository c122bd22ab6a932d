"""What a caller needs on every worklist row, in the list, in its CSV export and on paper.

A row leads to one patient and one visit (the visit itself on the visit lists, the patient's next scheduled visit
on the patient lists). The columns are read from the row's patient, from the visit, and from annotations that a
list adds to its queryset in the one query that fetches the page: the last contact attempt, the method that last
reached the patient and, on a patient list, the next visit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import DateField, F, OuterRef, QuerySet, Subquery, Value
from django.utils import formats, timezone
from django.utils.translation import get_language, gettext, ngettext
from django.utils.translation import gettext_lazy as _

from surveillance.admin.display import NONE, date_text, moment_text
from surveillance.models import ContactAttempt, FollowUpVisit, Patient, VisitStatus
from surveillance.models.patients import ContactMethod
from surveillance.seeds.labels import visit_label

#: What a row reads of its visit (the visit itself, or the patient's next one), each as ``cw_next_<name>``.
VISIT_COLUMNS = ("label", "rule_code", "due_date", "window_start", "window_end")


def contact_annotations(patient_ref: str) -> dict[str, Subquery]:
    """The last attempt to reach the patient at ``patient_ref`` (an ``OuterRef`` path) and the last that worked."""
    attempts = ContactAttempt.objects.filter(patient=OuterRef(patient_ref)).order_by("-attempted_at", "-pk")
    return {
        "cw_last_contact_at": Subquery(attempts.values("attempted_at")[:1]),
        "cw_last_contact_method": Subquery(attempts.values("method")[:1]),
        "cw_reached_by": Subquery(attempts.filter(reached=True).values("method")[:1]),
    }


def next_visit_annotations() -> dict[str, Subquery]:
    """On a patient list: the patient's next scheduled visit (the earliest due), column by column."""
    visits = FollowUpVisit.objects.filter(infusion__patient=OuterRef("pk"), status=VisitStatus.SCHEDULED).order_by(
        "due_date", "pk"
    )
    return {f"cw_next_{name}": Subquery(visits.values(name)[:1]) for name in VISIT_COLUMNS}


def with_call_columns(queryset: QuerySet, patient_path: str, today: dt.date) -> QuerySet:
    """``queryset`` (of visits or of patients) annotated with what ``CallRow`` reads beyond the row's own fields,
    ``today`` (the user's centre's day) included so that each row carries the day it is counted from."""
    queryset = queryset.annotate(cw_today=Value(today, output_field=DateField()))
    if patient_path == "":
        return queryset.annotate(**contact_annotations("pk"), **next_visit_annotations())
    return queryset.select_related(patient_path).annotate(
        **contact_annotations(patient_path),
        **{f"cw_next_{name}": F(name) for name in VISIT_COLUMNS},
    )


@dataclass(frozen=True)
class CallRow:
    """One row of a worklist as a caller reads it."""

    patient: Patient
    visit_label: str | None
    visit_rule_code: str | None
    due_date: dt.date | None
    window_start: dt.date | None
    window_end: dt.date | None
    last_contact_at: dt.datetime | None
    last_contact_method: str | None
    reached_by: str | None
    today: dt.date
    scheduled: bool = True

    @classmethod
    def of(cls, obj, patient: Patient, *, scheduled: bool = True) -> CallRow:
        """Read a row annotated by ``with_call_columns``; ``scheduled`` is false for a visit already settled."""
        return cls(
            patient=patient,
            visit_label=obj.cw_next_label,
            visit_rule_code=obj.cw_next_rule_code,
            due_date=obj.cw_next_due_date,
            window_start=obj.cw_next_window_start,
            window_end=obj.cw_next_window_end,
            last_contact_at=obj.cw_last_contact_at,
            last_contact_method=obj.cw_last_contact_method,
            reached_by=obj.cw_reached_by,
            today=obj.cw_today,
            scheduled=scheduled,
        )

    def preferred_contact(self) -> str:
        """How to try first: the way the patient was last reached; otherwise email when reminders go there."""
        if self.reached_by:
            return ContactMethod(self.reached_by).label
        if self.patient.email and self.patient.contact_consent:
            return ContactMethod.EMAIL.label
        return NONE

    def visit_name(self) -> str:
        """The visit's name in the reader's language (the labels catalogue); empty without a visit."""
        if self.visit_label is None:
            return ""
        return visit_label(self.visit_rule_code or "", self.visit_label, get_language())

    def is_late(self) -> bool:
        return self.scheduled and self.due_date is not None and self.due_date < self.today

    def language(self) -> str:
        return self.patient.get_preferred_language_display()

    def days(self) -> str:
        """Days late (past the due date) or days left until it; nothing for a visit done, missed or cancelled."""
        if self.due_date is None or not self.scheduled:
            return ""
        delta = (self.due_date - self.today).days
        if delta == 0:
            return gettext("due today")
        if delta < 0:
            return ngettext("%(days)d day late", "%(days)d days late", -delta) % {"days": -delta}
        return ngettext("%(days)d day left", "%(days)d days left", delta) % {"days": delta}


def window_text(row: CallRow) -> str:
    return f"{date_text(row.window_start)} → {date_text(row.window_end)}" if row.window_start else NONE


def last_contact_text(row: CallRow) -> str:
    if row.last_contact_at is None:
        return NONE
    return f"{moment_text(row.last_contact_at)} ({ContactMethod(row.last_contact_method).label.lower()})"


#: The CSV export's columns, headed in the reader's language (a spreadsheet is read by people, like the page).
#: Dates are ISO (a spreadsheet reads them as dates); moments carry their zone.
CSV_COLUMNS: list[tuple[str, Callable[[CallRow], object]]] = [
    (_("MRN"), lambda r: r.patient.mrn),
    (_("Patient"), lambda r: r.patient.display_name),
    (_("Phone"), lambda r: r.patient.phone),
    (_("Preferred contact"), CallRow.preferred_contact),
    (_("Language"), CallRow.language),
    (_("Next visit"), CallRow.visit_name),
    (_("Due date"), lambda r: r.due_date.isoformat() if r.due_date else ""),
    (_("Window opens"), lambda r: r.window_start.isoformat() if r.window_start else ""),
    (_("Window closes"), lambda r: r.window_end.isoformat() if r.window_end else ""),
    (_("Days late / left"), CallRow.days),
    (
        _("Last contact attempt"),
        lambda r: (
            formats.date_format(timezone.localtime(r.last_contact_at), "Y-m-d H:i T") if r.last_contact_at else ""
        ),
    ),
    (
        _("Last contact method"),
        lambda r: ContactMethod(r.last_contact_method).label if r.last_contact_method else "",
    ),
]
