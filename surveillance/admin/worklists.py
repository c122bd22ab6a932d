"""Worklists: the filtered lists coordinators and physicians work every day, with their counts on the index.

Each worklist is a filter (``?worklist=<key>``) on an ordinary admin list, so search, paging, bulk actions and
centre scoping come with it. Counts are one ``COUNT`` each, scoped to the user's centres.
"""

from __future__ import annotations

import csv
import datetime as dt
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import OrderBy, Q, QuerySet
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.http import urlencode
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from surveillance.access.audit import audit_record
from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.admin.field_labels import FIELD_LABELS
from surveillance.care import lifecycle
from surveillance.models import (
    FollowUpVisit,
    IdentityReview,
    IdentityReviewStatus,
    Infusion,
    LetterTask,
    Patient,
    PatientRequest,
    ProtocolRule,
    Reminder,
    ReportingStep,
    SignalReview,
    VisitStatus,
)
from surveillance.models.centres import TreatmentCentre
from surveillance.models.patients import CLOSED_STATUSES, ContactMethod, LadderStage, PatientStatus
from surveillance.models.reminders import ReminderStatus
from surveillance.models.visits import MISSED_WINDOW_END, OPEN_DUE, OPEN_WINDOW_START

DUE_SOON_DAYS = 14
MISSED_RECENT_DAYS = 90


def workspace_zone(request) -> zoneinfo.ZoneInfo:
    """The time zone of the user's (first) centre: the admin shows every time in it, and its day is the worklists'.

    A user of no centre (and the sign-in page) gets the server's zone.
    """
    cached = getattr(request, "_workspace_zone", None)
    if cached is not None:
        return cached
    centre_ids = user_centre_ids(request.user)
    centres = TreatmentCentre.objects.order_by("pk")
    if centre_ids is not None:
        centres = centres.filter(pk__in=centre_ids)
    tz_name = centres.values_list("time_zone", flat=True).first()
    zone = zoneinfo.ZoneInfo(tz_name) if tz_name else timezone.get_default_timezone()
    request._workspace_zone = zone
    return zone


def workspace_today(request) -> dt.date:
    """Today in the user's centre: worklists change at the clinic's midnight (one day for the whole request)."""
    cached = getattr(request, "_workspace_today", None)
    if cached is None:
        cached = request._workspace_today = timezone.localdate(timezone.now(), workspace_zone(request))
    return cached


def _followed(visits: QuerySet) -> QuerySet:
    return visits.exclude(infusion__patient__status__in=CLOSED_STATUSES)


@dataclass(frozen=True)
class Worklist:
    key: str
    label: str
    model: type
    centre_path: str
    help: str
    apply: Callable[[QuerySet, dt.date], QuerySet]
    escalated: Callable[[QuerySet, dt.date], QuerySet] | None = None  # the rows shown as escalated on the tile
    ordering: tuple[str | OrderBy, ...] | None = None  # the list's order, where it is not its model admin's

    def queryset(self, user, today: dt.date) -> QuerySet:
        return self.apply(scope(self.model._default_manager.all(), user, self.centre_path), today)

    def url(self) -> str:
        changelist = reverse(f"admin:surveillance_{self.model._meta.model_name}_changelist")
        return f"{changelist}?{urlencode({'worklist': self.key})}"


VISIT_CENTRE = "infusion__patient__centre"
#: Open visits by due date, as the index of open visits' due dates holds them (the same order as by due date and
#: id, the visit list's own): a page of overdue visits is then the start of a range of that index. In due-date
#: order PostgreSQL walked the export's (due date, id) index through years of settled visits to the first overdue
#: one, taking it for a few thousand rows when it was millions (4 s a page at 100,000 patients).
OPEN_DUE_ORDER = (OPEN_DUE.asc(), "pk")

WORKLISTS: tuple[Worklist, ...] = (
    # The three lists of scheduled visits follow a visit through its life without overlap: coming up (window not
    # open yet), window open (until the due date passes), then overdue (until the daily sweep marks it missed).
    Worklist(
        "due14",
        format_lazy(_("Coming up (next {days} days)"), days=DUE_SOON_DAYS),
        FollowUpVisit,
        VISIT_CENTRE,
        _("Scheduled visits due soon whose window is not open yet: book them."),
        lambda qs, today: (
            _followed(qs)
            .alias(open_due=OPEN_DUE)
            .filter(status=VisitStatus.SCHEDULED, open_due__range=(today, today + dt.timedelta(days=DUE_SOON_DAYS)))
            .filter(window_start__gt=today)
        ),
        ordering=OPEN_DUE_ORDER,
    ),
    Worklist(
        "window_open",
        _("Window open now"),
        FollowUpVisit,
        VISIT_CENTRE,
        _("Scheduled visits whose protocol window includes today and which are not yet late."),
        lambda qs, today: (
            _followed(qs)
            .alias(open_window_start=OPEN_WINDOW_START)
            .filter(open_window_start__lte=today, window_end__gte=today, due_date__gte=today)
        ),
    ),
    Worklist(
        "overdue",
        _("Overdue"),
        FollowUpVisit,
        VISIT_CENTRE,
        _("Past the due date and not recorded yet (including visits whose window closed in the last days)."),
        lambda qs, today: (
            _followed(qs).alias(open_due=OPEN_DUE).filter(status=VisitStatus.SCHEDULED, open_due__lt=today)
        ),
        ordering=OPEN_DUE_ORDER,
    ),
    Worklist(
        "missed",
        format_lazy(_("Missed (last {days} days)"), days=MISSED_RECENT_DAYS),
        FollowUpVisit,
        VISIT_CENTRE,
        _("Visits marked missed whose window closed recently: reach the patient."),
        lambda qs, today: (
            _followed(qs)
            .alias(missed_window_end=MISSED_WINDOW_END)
            .filter(missed_window_end__gte=today - dt.timedelta(days=MISSED_RECENT_DAYS))
        ),
        # by when the window closed, as the list is defined (due-date order walked every missed visit of the
        # registry's history for a page)
        ordering=("window_end", "pk"),
    ),
    Worklist(
        "ladder",
        _("Slipping away (lost-to-follow-up ladder)"),
        Patient,
        "centre",
        _("Patients moving up the ladder after missed visits, and those lost: log every attempt to reach them."),
        lambda qs, today: qs.filter(
            Q(status=PatientStatus.LOST) | Q(status=PatientStatus.ACTIVE) & ~Q(ladder_stage=LadderStage.ON_TRACK)
        ),
    ),
    Worklist(
        "failed_reminders",
        _("Failed reminders"),
        Reminder,
        "visit__infusion__patient__centre",
        _("Reminders that could not be delivered (bad address, bounced): correct the contact details."),
        lambda qs, today: qs.filter(status__in=(ReminderStatus.FAILED, ReminderStatus.BOUNCED)).exclude(
            visit__infusion__patient__status__in=CLOSED_STATUSES
        ),
    ),
    Worklist(
        "letters",
        _("Letters and calls to make"),
        LetterTask,
        "visit__infusion__patient__centre",
        _("Patients no email or SMS reaches: print the letter (or call), then mark the task done."),
        lambda qs, today: qs.filter(done_at__isnull=True).exclude(visit__infusion__patient__status__in=CLOSED_STATUSES),
    ),
    Worklist(
        "requests",
        _("Patient requests"),
        PatientRequest,
        "visit__infusion__patient__centre",
        _("What patients said through the links in reminders: confirm, reschedule, done elsewhere."),
        lambda qs, today: qs.filter(handled_at__isnull=True),
    ),
    Worklist(
        "product",
        _("Infusions whose product is to confirm"),
        Infusion,
        "patient__centre",
        _(
            "Imported from a CAR-T procedure that names no product, planned on the intensified variant meanwhile: "
            "name the product (the re-plan shows its diff first)."
        ),
        lambda qs, today: qs.filter(product__isnull=True, superseded_by__isnull=True).exclude(
            patient__status__in=CLOSED_STATUSES
        ),
    ),
    Worklist(
        "identity",
        _("Imported patients to identify"),
        IdentityReview,
        "centre",
        _(
            "Imported Patients refused because they match a stored patient whose birth date or family name differ: "
            "link, create or reject each."
        ),
        lambda qs, today: qs.filter(status=IdentityReviewStatus.OPEN),
    ),
    Worklist(
        "reporting",
        _("Second-cancer reports to file"),
        ReportingStep,
        "event__infusion__patient__centre",
        _("Open reporting steps of malignancy events; those past due are escalated."),
        lambda qs, today: qs.filter(completed_at__isnull=True),
        lambda qs, today: qs.filter(due_date__lt=today),
    ),
    Worklist(
        "signals",
        _("Second-cancer signals to review"),
        SignalReview,
        "patient__centre",
        _(
            "Results and diagnoses from the EHR that may mean a second cancer, most urgent first: confirm, order the "
            "work-up, or dismiss with a reason. Those left open too long are escalated."
        ),
        lambda qs, today: qs.unresolved(),
        lambda qs, today: qs.filter(escalated_at__isnull=False),
    ),
)
WORKLISTS_BY_KEY = {w.key: w for w in WORKLISTS}


#: The home page's tiles, and the lists of rows that pile up over the years (undelivered reminders), count up to
#: here, then say "1000+": a backlog that large is narrowed by filters and search rather than counted, and counting
#: it exactly cost more than the rest of the page at registry scale. (A limited count relies on the database
#: judging well how many rows match: the visit lists filter on indexed expressions for that, see ``OPEN_DUE``.)
COUNT_CAP = 1000


def bounded_count(queryset: QuerySet) -> int:
    """The rows of ``queryset``, counted up to ``COUNT_CAP + 1`` (more than the cap reads as "more than it").

    Unordered and limited, the count stops once it has seen enough rows, whatever the size of the table.
    """
    return queryset.order_by().values("pk")[: COUNT_CAP + 1].count()


class BoundedPaginator(Paginator):
    """A list's pages, counted with ``bounded_count``: the pages past the cap are not offered."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        return bounded_count(self.object_list)

    @property
    def more(self) -> bool:
        return self.count > self.cap

    @property
    def shown_count(self) -> str:
        """The count as pages say it: the number, or "1000+" past the cap."""
        return f"{self.cap}+" if self.more else str(self.count)


@dataclass(frozen=True)
class WorklistCount:
    worklist: Worklist
    count: int
    escalated: int | None = None
    cap: int = COUNT_CAP

    @property
    def more(self) -> bool:
        return self.count > self.cap


def worklist_counts(request) -> list[WorklistCount]:
    """The index tiles: one scoped, bounded COUNT per worklist (and one for its escalated rows, where it has
    them)."""
    today = workspace_today(request)
    result = []
    for worklist in WORKLISTS:
        if not request.user.has_perm(f"surveillance.view_{worklist.model._meta.model_name}"):
            continue
        qs = worklist.queryset(request.user, today)
        escalated = worklist.escalated(qs, today).count() if worklist.escalated else None
        result.append(WorklistCount(worklist, bounded_count(qs), escalated))
    return result


class WorklistFilter(admin.SimpleListFilter):
    title = _("worklist")
    parameter_name = "worklist"

    def lookups(self, request, model_admin):
        return [(w.key, w.label) for w in WORKLISTS if w.model is model_admin.model]

    def queryset(self, request, queryset):
        worklist = WORKLISTS_BY_KEY.get(self.value() or "")
        if worklist is None or worklist.model is not queryset.model:
            return queryset
        return worklist.apply(queryset, workspace_today(request))


class RuleCodeFilter(admin.SimpleListFilter):
    """The visit list's filter by protocol rule, its choices read from the protocols' rules (a few hundred rows).

    Django's own filter for the field would list the distinct codes of every visit in the user's centres: a scan
    of the whole visit table on each page of every visit worklist, which grows with the registry.
    """

    title = FIELD_LABELS["rule_code"]
    parameter_name = "rule_code"

    def lookups(self, request, model_admin):
        codes = ProtocolRule.objects.order_by("code").values_list("code", flat=True).distinct()
        return [(code, code) for code in codes]

    def queryset(self, request, queryset):
        return queryset.filter(rule_code=self.value()) if self.value() else queryset


def current_worklist(request) -> Worklist | None:
    return WORKLISTS_BY_KEY.get(request.GET.get("worklist", ""))


# --- Bulk actions -------------------------------------------------------------------------------------------------


class ContactForm(forms.Form):
    method = forms.ChoiceField(label=_("Method"), choices=ContactMethod.choices, initial=ContactMethod.PHONE)
    reached = forms.BooleanField(
        label=_("Reached"), required=False, initial=True, help_text=_("The patient (or a relative) was reached.")
    )
    note = forms.CharField(label=_("Note"), max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=255, help_text=_("Why these visits will not take place."))


def _patients_of(queryset, patient_path: str) -> list[Patient]:
    column = "pk" if patient_path == "" else f"{patient_path}_id"
    ids = set(queryset.values_list(column, flat=True))
    return list(Patient.objects.filter(pk__in=ids).order_by("pk"))


def mark_contacted(modeladmin, request, queryset, *, patient_path: str):
    patients = _patients_of(queryset, patient_path)
    for patient in patients:
        lifecycle.contact_attempt_log(
            patient, method=ContactMethod.PHONE, reached=True, note="Marked contacted from a worklist", by=request.user
        )
    done = ngettext(
        "Contact recorded for %(count)d patient.", "Contact recorded for %(count)d patients.", len(patients)
    )
    modeladmin.message_user(request, done % {"count": len(patients)}, messages.SUCCESS)


def log_attempt(modeladmin, request, queryset, *, patient_path: str):
    """Intermediate page: the method, whether the patient was reached, a note; then one attempt per patient."""
    patients = _patients_of(queryset, patient_path)
    form = ContactForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        for patient in patients:
            lifecycle.contact_attempt_log(patient, by=request.user, **form.cleaned_data)
        done = ngettext(
            "Attempt logged for %(count)d patient.", "Attempt logged for %(count)d patients.", len(patients)
        )
        modeladmin.message_user(request, done % {"count": len(patients)}, messages.SUCCESS)
        return None
    return TemplateResponse(
        request,
        "surveillance/admin/bulk_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": _("Log a contact attempt"),
            "form": form,
            "objects": queryset,
            "patients": patients,
            "action": "log_attempt",
            "opts": modeladmin.model._meta,
        },
        status=400 if form.is_bound else 200,
    )


class UndoEhrCompletionForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=255,
        help_text=_("Why the EHR encounter was not this visit (kept with the change)."),
    )


def _visits_with_reason(
    modeladmin, request, queryset, form_class, *, title: str, action: str, transition, done: Callable[[int], str]
):
    """A bulk action that asks for one reason, then applies a lifecycle transition to each selected visit; visits
    someone else changed first are counted, not failed. ``done(n)`` words the outcome (``%(count)d``)."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        applied = refused = 0
        for visit in queryset.select_related("infusion__patient__centre", "rule"):
            try:
                transition(visit, reason=form.cleaned_data["reason"], by=request.user)
                applied += 1
            except lifecycle.TransitionError:
                refused += 1
        modeladmin.message_user(request, done(applied) % {"count": applied}, messages.SUCCESS)
        if refused:
            gone = ngettext(
                "%(count)d visit was no longer scheduled.", "%(count)d visits were no longer scheduled.", refused
            )
            modeladmin.message_user(request, gone % {"count": refused}, messages.WARNING)
        return None
    return TemplateResponse(
        request,
        "surveillance/admin/bulk_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "objects": queryset.select_related("infusion__patient"),
            "action": action,
            "opts": modeladmin.model._meta,
        },
        status=400 if form.is_bound else 200,
    )


def cancel_with_reason(modeladmin, request, queryset):
    return _visits_with_reason(
        modeladmin,
        request,
        queryset,
        CancelForm,
        title=_("Cancel visits"),
        action="cancel_with_reason",
        transition=lifecycle.visit_cancel,
        done=lambda n: ngettext("%(count)d visit cancelled.", "%(count)d visits cancelled.", n),
    )


def undo_ehr_completion(modeladmin, request, queryset):
    """Visits an EHR encounter marked done that were not that encounter: scheduled again, audited."""
    return _visits_with_reason(
        modeladmin,
        request,
        queryset,
        UndoEhrCompletionForm,
        title=_("Undo EHR completion"),
        action="undo_ehr_completion",
        transition=lifecycle.visit_ehr_completion_undo,
        done=lambda n: ngettext("%(count)d visit scheduled again.", "%(count)d visits scheduled again.", n),
    )


def export_csv(modeladmin, request, queryset, *, columns: list[tuple[str, Callable]], patient_path: str):
    """The selected rows as CSV, recorded in the audit trail with the patients it contained.

    UTF-8 with a byte-order mark: without it Excel reads the file as the local code page and garbles accented
    names.
    """
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{modeladmin.model._meta.model_name}s.csv"'
    response.write("\ufeff")
    writer = csv.writer(response)
    writer.writerow([name for name, _ in columns])
    for obj in queryset:
        writer.writerow([getter(obj) for _, getter in columns])
    column = "pk" if patient_path == "" else f"{patient_path}_id"
    patient_ids = sorted(set(queryset.values_list(column, flat=True)))
    audit_record(
        request,
        "export",
        object_type=modeladmin.model._meta.model_name,
        changes={"patient_ids": patient_ids, "rows": len(patient_ids)},
    )
    return response


def handle_requests(modeladmin, request, queryset):
    handled = sum(
        lifecycle.patient_request_handle(row, by=request.user) for row in queryset.select_related("visit__infusion")
    )
    done = ngettext("%(count)d request marked handled.", "%(count)d requests marked handled.", handled)
    modeladmin.message_user(request, done % {"count": handled}, messages.SUCCESS)
