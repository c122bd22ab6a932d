"""Follow-up visits: what the planner writes from a protocol, and what clinicians record against it."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.models.patients import Infusion, Patient
from surveillance.models.protocols import ProtocolRule, VisitKind
from surveillance.seeds.labels import choice_label


class VisitStatus(models.TextChoices):
    SCHEDULED = "scheduled", choice_label("visit.scheduled")
    COMPLETED = "completed", choice_label("visit.completed")
    MISSED = "missed", choice_label("visit.missed")
    CANCELLED = "cancelled", choice_label("visit.cancelled")
    # Its window had closed before the infusion was recorded here: whether it took place is not known yet. It can
    # still be recorded (done or not done), but it is never reminded of, never missed and never on a worklist.
    UNRECORDED = "unrecorded", choice_label("visit.unrecorded")


#: A visit in one of these states is history: re-planning never touches it.
SETTLED_STATUSES = (VisitStatus.COMPLETED, VisitStatus.MISSED)

#: When a visit is due: a re-plan that changes any of these moves the visit (its iCalendar sequence rises).
PLAN_DATE_FIELDS = ("due_date", "window_start", "window_end")
#: What a visit is for: a re-plan that changes any of these changes the visit in place.
PLAN_CONTENT_FIELDS = ("label", "kind", "assessments")
#: Every field the planner copies from the engine's ``PlannedVisit`` (same names there), in the order the API and
#: the exports list them. The planner, the serializers and the exports read this one list.
PLAN_FIELDS = ("label", "kind", *PLAN_DATE_FIELDS, "assessments")
#: States a clinician can still record a visit from (as done, or as not done with a reason).
RECORDABLE_STATUSES = (VisitStatus.SCHEDULED, VisitStatus.UNRECORDED)


def _while(status: str, field: str) -> models.Case:
    return models.Case(models.When(status=status, then=models.F(field)))


# A visit's date while it has a status, else NULL. Each is indexed: beside serving the worklist's range, the index
# gives the database statistics of that date among those visits alone. From the columns apart it guessed a tenth of
# the table for "open and due before today" (in truth the few overdue visits) and read the whole table to count
# them, at registry scale.
#: The due date of an open visit: the overdue and coming-up worklists, the daily missed-visit sweep.
OPEN_DUE = _while(VisitStatus.SCHEDULED, "due_date")
#: The window start of an open visit: the window-open worklist.
OPEN_WINDOW_START = _while(VisitStatus.SCHEDULED, "window_start")
#: The window end of a missed visit: the recently-missed worklist.
MISSED_WINDOW_END = _while(VisitStatus.MISSED, "window_end")


class FollowUpVisitQuerySet(models.QuerySet):
    def open(self) -> FollowUpVisitQuerySet:
        return self.filter(status=VisitStatus.SCHEDULED)

    def due_between(self, start: dt.date, end: dt.date) -> FollowUpVisitQuerySet:
        # by the open visit's due date (``OPEN_DUE``), as every look-up of open visits by due date: read from its
        # index, counted by its statistics
        return self.open().alias(open_due=OPEN_DUE).filter(open_due__range=(start, end))

    def overdue_on(self, day: dt.date) -> FollowUpVisitQuerySet:
        """Past the due date, window still open: the last chance to book it."""
        return self.open().alias(open_due=OPEN_DUE).filter(open_due__lt=day, window_end__gte=day)


class FollowUpVisit(models.Model):
    """A planned visit. Its identity is (infusion, rule code, occurrence), which makes re-planning idempotent."""

    # No index of its own: the identity's unique index (infusion, rule code, occurrence) leads with the infusion and
    # serves every look-up by it (a second index cost every planned visit an entry, and 270 MB at 1M patients).
    infusion = models.ForeignKey(Infusion, on_delete=models.CASCADE, related_name="visits", db_index=False)
    rule = models.ForeignKey(ProtocolRule, on_delete=models.PROTECT, related_name="visits")
    rule_code = models.CharField(max_length=32)
    occurrence = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=VisitKind.choices)
    due_date = models.DateField()
    window_start = models.DateField()
    window_end = models.DateField()
    assessments = models.JSONField(default=list, help_text=_("Codes of the assessments this visit asks for."))
    status = models.CharField(max_length=10, choices=VisitStatus.choices, default=VisitStatus.SCHEDULED)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    status_reason = models.CharField(max_length=255, blank=True)
    completed_on = models.DateField(null=True, blank=True)
    completed_source = models.CharField(
        max_length=255, blank=True, help_text=_("The EHR encounter that recorded it done (empty: a person did).")
    )
    ehr_completion_undone = models.CharField(
        max_length=255, blank=True, help_text=_("An EHR encounter a coordinator said was not this visit.")
    )
    booked_for = models.DateField(null=True, blank=True, help_text=_("The day the patient is booked for."))
    booked_source = models.CharField(max_length=255, blank=True, help_text=_("The EHR appointment that booked it."))
    booked_start = models.DateTimeField(
        null=True, blank=True, help_text=_("The appointment's start, when it gave a time.")
    )
    booked_end = models.DateTimeField(null=True, blank=True, help_text=_("The appointment's end, when it gave one."))
    results = models.JSONField(default=dict, blank=True, help_text=_("Free-form notes sent with a completion."))
    sequence = models.PositiveIntegerField(default=0, help_text=_("iCalendar SEQUENCE: rises when the visit moves."))
    planner_cancelled = models.BooleanField(
        default=False, help_text=_("Cancelled by a re-plan (the plan no longer has it), not by a person.")
    )
    reminders_planned_for = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("The sequence the outbox rows were planned for (null: not yet).")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = FollowUpVisitQuerySet.as_manager()

    class Meta:
        verbose_name = _("follow-up visit")
        verbose_name_plural = _("follow-up visits")
        ordering = ["due_date", "rule_code", "occurrence"]
        constraints = [
            models.UniqueConstraint(fields=["infusion", "rule_code", "occurrence"], name="visit_identity_unique"),
            models.CheckConstraint(
                condition=models.Q(window_start__lte=models.F("due_date"), window_end__gte=models.F("due_date")),
                name="visit_window_contains_due_date",
            ),
            models.CheckConstraint(condition=models.Q(status__in=VisitStatus.values), name="visit_status_valid"),
            models.CheckConstraint(
                condition=~models.Q(status=VisitStatus.COMPLETED) | models.Q(completed_on__isnull=False),
                name="visit_completion_dated",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[VisitStatus.SCHEDULED, VisitStatus.COMPLETED])
                | ~models.Q(status_reason=""),
                name="visit_missed_or_cancelled_has_reason",
            ),
            models.CheckConstraint(
                condition=models.Q(completed_source="") | models.Q(status=VisitStatus.COMPLETED),
                name="visit_ehr_completion_is_completed",
            ),
            models.CheckConstraint(
                condition=models.Q(booked_for__isnull=True, booked_source="")
                | (models.Q(booked_for__isnull=False) & ~models.Q(booked_source="")),
                name="visit_booking_has_source",
            ),
            # a booked time belongs to a booked day, and an appointment ends after it starts
            models.CheckConstraint(
                condition=(models.Q(booked_start__isnull=True) | models.Q(booked_for__isnull=False))
                & (
                    models.Q(booked_end__isnull=True)
                    | models.Q(booked_start__isnull=False, booked_end__gte=models.F("booked_start"))
                ),
                name="visit_booked_time_has_day",
            ),
        ]
        indexes = [
            # the worklists' counts by the dates of open or missed visits (see OPEN_DUE): overdue and coming up,
            # window open, recently missed; and the daily sweep's overdue visits, among them those whose window
            # closed. Open visits by due date end with the id: the API's list of scheduled visits reads its pages
            # in that order, a range of this index, without walking years of settled visits. A look-up by due
            # date among other statuses reads the export's index: every index keyed on a date costs each new
            # visit a write at a random place in it, which is what grows as the registry does
            # (``bench/visit_growth.py``).
            models.Index(OPEN_DUE, models.F("id"), name="visit_open_due_idx"),
            models.Index(OPEN_WINDOW_START, name="visit_open_window_idx"),
            models.Index(MISSED_WINDOW_END, name="visit_missed_window_idx"),
            # the bulk export's keyset pages: (due date, id) after the cursor, in that order
            models.Index(fields=["due_date", "id"], name="visit_export_keyset_idx"),
            # the daily outbox top-up: scheduled visits entering the reminder look-ahead
            models.Index(
                fields=["due_date"],
                condition=models.Q(status="scheduled", reminders_planned_for__isnull=True),
                name="visit_outbox_topup_idx",
            ),
            # a user's deletion, which clears the visits they changed: only those visits have an entry (every
            # visit is planned without one)
            models.Index(
                fields=["status_changed_by"],
                condition=models.Q(status_changed_by__isnull=False),
                name="visit_changed_by_idx",
            ),
        ]

    def __str__(self) -> str:
        return gettext("%(code)s#%(n)s due %(day)s") % {
            "code": self.rule_code,
            "n": self.occurrence,
            "day": self.due_date,
        }

    @property
    def patient(self) -> Patient:
        return self.infusion.patient

    def window(self) -> tuple[dt.date, dt.date]:
        return self.window_start, self.window_end

    def is_overdue(self, today: dt.date) -> bool:
        return self.status == VisitStatus.SCHEDULED and self.due_date < today <= self.window_end

    def is_past_window(self, today: dt.date) -> bool:
        return self.status == VisitStatus.SCHEDULED and today > self.window_end

    def calendar_span(self) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime | None]:
        """When the visit's calendar entry runs (start, end): the booked appointment's times when the EHR gave
        them (no end when it gave none), else its whole booked day, else the whole day the visit is due."""
        if self.booked_start is not None:
            return self.booked_start, self.booked_end
        day = self.booked_for or self.due_date
        return day, day + dt.timedelta(days=1)

    def calendar_status(self) -> str:
        """The iCalendar STATUS of its entry: a booked visit is confirmed; one not booked yet is tentative, on the
        day it is due, until the patient books a day in its window."""
        if self.status == VisitStatus.CANCELLED:
            return "CANCELLED"
        return "CONFIRMED" if self.booked_for else "TENTATIVE"

    def ics_uid(self) -> str:
        """Stable per visit identity (not per row), so a re-planned visit updates the same calendar entry."""
        return self.uid_of(self.infusion_id, self.rule_code, self.occurrence)

    @staticmethod
    def uid_of(infusion_id: int, rule_code: str, occurrence: int) -> str:
        """``ics_uid`` of a visit read as columns rather than as a row."""
        return f"visit-{infusion_id}-{rule_code}-{occurrence}@cartwatch"


class VisitChange(models.Model):
    """History of a visit: every move, status change and correction, written with the change itself."""

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="changes")
    at = models.DateTimeField(auto_now_add=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["visit", "at", "pk"]

    def __str__(self) -> str:
        return f"{self.action} at {self.at:%Y-%m-%d %H:%M}"


class ConditionDecision(models.Model):
    """A clinician's recorded decision that a conditional rule applies (e.g. counts still low at day 28)."""

    infusion = models.ForeignKey(Infusion, on_delete=models.CASCADE, related_name="condition_decisions")
    condition = models.CharField(max_length=32)
    active = models.BooleanField(help_text=_("Whether the condition holds, so its conditional visits are planned."))
    until = models.DateField(null=True, blank=True, help_text=_("Last day the conditional visits run to."))
    reason = models.CharField(max_length=255)
    decided_on = models.DateField()
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["infusion", "condition"], name="decision_one_per_condition")]

    def __str__(self) -> str:
        return f"{self.condition}: {'applies' if self.active else 'does not apply'}"


class RequestKind(models.TextChoices):
    CONFIRM = "confirm", choice_label("request.confirm")
    RESCHEDULE = "reschedule", choice_label("request.reschedule")
    DONE_ELSEWHERE = "done_elsewhere", choice_label("request.done_elsewhere")


class PatientRequest(models.Model):
    """What a patient said through a signed link in a reminder; a task on the coordinator's worklist."""

    visit = models.ForeignKey(FollowUpVisit, on_delete=models.CASCADE, related_name="patient_requests")
    kind = models.CharField(max_length=16, choices=RequestKind.choices)
    message = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name = _("patient request")
        verbose_name_plural = _("patient requests")
        ordering = ["-received_at"]
        indexes = [
            # the coordinator's "patient requests" worklist: unhandled first
            models.Index(fields=["handled_at", "received_at"], name="request_worklist_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.received_at:%Y-%m-%d})"
