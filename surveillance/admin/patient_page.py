"""The patient page and the actions taken from it: record a visit, reschedule, cancel, log a contact attempt,
change a risk flag or the infusion date (the re-plan diff is shown and must be confirmed).

Every action calls the lifecycle or planning function that owns the transition; nothing here writes a status.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.admin.display import date_text
from surveillance.admin.worklists import ContactForm, workspace_today
from surveillance.care import infusions, lifecycle, planning
from surveillance.care.results import ResultEntry, ResultsRefused, canonical_unit, visit_record
from surveillance.care.risk_flags import FlagFacts, risk_flag_write
from surveillance.exports.printed_schedule import printed_schedule
from surveillance.models import (
    CarTProduct,
    FollowUpVisit,
    Infusion,
    MalignancyEvent,
    Patient,
    ProtocolRule,
    Reminder,
    ResultOutcome,
    RiskFlag,
    VisitStatus,
)
from surveillance.models.patients import CLOSED_STATUSES, FlagSource, PatientStatus, RiskFlagCode
from surveillance.models.protocols import VisitKind
from surveillance.models.visits import RECORDABLE_STATUSES
from surveillance.scheduling.engine import EARLIEST_INFUSION
from surveillance.seeds.analytes import analytes
from surveillance.seeds.labels import label, visit_label

TIMELINE_YEARS = 15
REMINDERS_SHOWN = 200
SIGNAL_REVIEWS_SHOWN = 20


# --- The timeline: the whole 15-year schedule as one server-rendered SVG -----------------------------------------


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    lanes: list[dict]
    windows: list[dict]
    markers: list[dict]
    ticks: list[dict]
    today_x: float | None
    next_due: FollowUpVisit | None
    beyond: int


TICKS = (("D0", 0), ("D28", 28), ("M3", 91), ("M6", 182), ("Y1", 365), ("Y2", 730), ("Y3", 1096), ("Y5", 1826),
         ("Y10", 3652), ("Y15", 5479))  # fmt: skip
STATUS_CLASS = {
    VisitStatus.COMPLETED: "done",
    VisitStatus.MISSED: "missed",
    VisitStatus.CANCELLED: "cancelled",
    VisitStatus.SCHEDULED: "scheduled",
    VisitStatus.UNRECORDED: "unrecorded",
}


def visit_timeline(infusion: Infusion, visits: list[FollowUpVisit], today: dt.date, width: int = 960) -> Timeline:
    """Lanes by visit kind; x is the square root of time since infusion, so the busy first year stays legible.
    Names and dates are in the reader's language."""
    language = get_language()
    left, right, lane_h, top = 150, 20, 26, 8
    span = (
        infusion.infusion_date.replace(year=infusion.infusion_date.year + TIMELINE_YEARS) - infusion.infusion_date
    ).days
    plot = width - left - right

    def x_of(day: dt.date) -> float:
        days = min(max((day - infusion.infusion_date).days, 0), span)
        return round(left + plot * math.sqrt(days / span), 1)

    shown = [v for v in visits if (v.due_date - infusion.infusion_date).days <= span]
    kinds = [k for k in VisitKind.values if any(v.kind == k for v in shown)]
    lane_y = {k: top + i * lane_h + lane_h / 2 for i, k in enumerate(kinds)}
    next_due = min(
        (v for v in visits if v.status == VisitStatus.SCHEDULED and v.window_end >= today),
        key=lambda v: v.due_date,
        default=None,
    )
    windows, markers = [], []
    for v in shown:
        y = lane_y[v.kind]
        if v.status == VisitStatus.SCHEDULED and v.window_start != v.window_end:
            x0, x1 = x_of(v.window_start), x_of(v.window_end)
            windows.append({"x": x0, "y": y - 7, "w": max(x1 - x0, 2), "h": 14})
        day = v.completed_on if v.status == VisitStatus.COMPLETED and v.completed_on else v.due_date
        status = "next" if next_due is not None and v.pk == next_due.pk else STATUS_CLASS.get(v.status, "scheduled")
        title = gettext("%(visit)s (%(code)s #%(n)s): %(status)s, due %(due)s, window %(start)s to %(end)s") % {
            "visit": visit_label(v.rule_code, v.label, language),
            "code": v.rule_code,
            "n": v.occurrence,
            "status": v.get_status_display(),
            "due": date_text(v.due_date),
            "start": date_text(v.window_start),
            "end": date_text(v.window_end),
        }
        if v.completed_on:
            title += gettext(", done %(day)s") % {"day": date_text(v.completed_on)}
        markers.append({"cx": x_of(day), "cy": y, "r": 7 if status == "next" else 4.5, "cls": status, "title": title})
    height = top + len(kinds) * lane_h + 30
    axis_y = top + len(kinds) * lane_h + 4
    ticks = [
        {"x": x_of(infusion.infusion_date + dt.timedelta(days=d)), "label": name, "y": axis_y} for name, d in TICKS
    ]
    today_x = x_of(today) if infusion.infusion_date <= today else None
    lanes = [{"y": lane_y[k], "label": label(k, language)} for k in kinds]
    return Timeline(width, height, lanes, windows, markers, ticks, today_x, next_due, len(visits) - len(shown))


# --- The patient page ---------------------------------------------------------------------------------------------


def patient_page_context(request, patient: Patient) -> dict:
    """Everything the patient page shows besides the demographics form, in a fixed number of queries."""
    today = workspace_today(request)
    infusions = list(
        Infusion.objects.filter(patient=patient)
        .select_related("product", "protocol", "superseded_by", "patient")
        .prefetch_related(
            Prefetch("risk_flags", queryset=RiskFlag.objects.select_related("recorded_by")),
            "condition_decisions",
            Prefetch("visits", queryset=FollowUpVisit.objects.order_by("due_date", "rule_code", "occurrence")),
        )
        .order_by("-infusion_date")
    )
    for infusion in infusions:
        infusion.timeline = visit_timeline(infusion, list(infusion.visits.all()), today)
        infusion.next_visits = [
            v for v in infusion.visits.all() if v.status == VisitStatus.SCHEDULED and v.window_end >= today
        ][:6]
        infusion.recent_visits = [v for v in infusion.visits.all() if v.status != VisitStatus.SCHEDULED][-12:]
        infusion.variant_reasons = [label for _code, label in planning.infusion_variant_reasons(infusion)]
    reminders = list(
        Reminder.objects.filter(visit__infusion__patient=patient)
        .select_related("visit")
        .order_by("-send_after")[:REMINDERS_SHOWN]
    )
    events = list(
        MalignancyEvent.objects.filter(infusion__patient=patient)
        .select_related("infusion__product")
        .prefetch_related("reporting_steps")
    )
    user = request.user
    return {
        "today": today,
        "infusions": infusions,
        "reminders": reminders,
        "contact_attempts": list(patient.contact_attempts.select_related("by")[:50]),
        "events": events,
        "signal_reviews": list(patient.signal_reviews.order_by("-opened_at")[:SIGNAL_REVIEWS_SHOWN]),
        "can_act_on_visits": user.has_perm("surveillance.change_followupvisit"),
        "can_replan": user.has_perm("surveillance.change_infusion") and user.has_perm("surveillance.change_riskflag"),
        "can_record_event": user.has_perm("surveillance.add_malignancyevent"),
        "can_log_attempt": user.has_perm("surveillance.add_contactattempt"),
        "can_close": user.has_perm("surveillance.change_patient") and patient.under_follow_up,
    }


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


def patient_url(patient_id: int) -> str:
    return reverse("admin:surveillance_patient_change", args=[patient_id])


# --- Visit actions ------------------------------------------------------------------------------------------------


def _assessments(visit: FollowUpVisit) -> list[tuple[str, str]]:
    """The visit's assessment codes with the labels a coordinator reads (``seeds/labels.yaml``)."""
    language = get_language()
    return [(str(code), label(str(code), language)) for code in visit.assessments or []]


class CompleteForm(forms.Form):
    """Record a visit done: how each assessment went, the blood count's values if at hand, and a note. The
    "nothing abnormal for the rest" button records every assessment left blank as done, nothing abnormal."""

    completed_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label=_("Done on"))
    note = forms.CharField(label=_("Note"), max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, visit: FollowUpVisit, today: dt.date, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        outcomes = [("", "—"), *((value, label(value, get_language())) for value in ResultOutcome.values)]
        self.assessment_codes = []
        for code, text in _assessments(visit):
            name = f"result_{code}"
            self.fields[name] = forms.ChoiceField(choices=outcomes, required=False, label=text)
            self.assessment_codes.append((code, name))
        self.analyte_fields = []
        for analyte in analytes().values():
            assessment = analyte.assessment_of(visit.assessments or [])
            if assessment is None:
                continue
            value, unit = f"value_{analyte.code}", f"unit_{analyte.code}"
            self.fields[value] = forms.FloatField(required=False, label=label(analyte.code, get_language()))
            self.fields[unit] = forms.CharField(
                max_length=32, required=False, label=_("Unit"), initial=canonical_unit(analyte)
            )
            self.analyte_fields.append((assessment, analyte.code, value, unit))

    def clean_completed_on(self):
        value = self.cleaned_data["completed_on"]
        if value > self.today:
            raise forms.ValidationError(_("A visit cannot be recorded as done on a future date."))
        return value

    def entries(self) -> tuple[list[ResultEntry], list[str]]:
        """The results entered, and the form field each one came from (to place a refusal's message)."""
        entries, names = [], []
        for code, name in self.assessment_codes:
            if self.cleaned_data[name]:
                entries.append(ResultEntry(code, self.cleaned_data[name]))
                names.append(name)
        for assessment, analyte, value, unit in self.analyte_fields:
            if self.cleaned_data[value] is not None:
                done_on = self.cleaned_data["completed_on"]
                entries.append(
                    ResultEntry(
                        assessment,
                        analyte=analyte,
                        value=self.cleaned_data[value],
                        unit=self.cleaned_data[unit].strip(),
                        effective_on=done_on,
                    )
                )
                names.append(value)
        return entries, names

    def refusal_show(self, refused: ResultsRefused, names: list[str]) -> None:
        for where, messages_ in refused.problems.items():
            index, _dot, part = where.partition(".")
            name = names[int(index)]
            if part == "unit":
                name = name.replace("value_", "unit_", 1)
            self.add_error(name, " ".join(messages_))

    def notes(self) -> dict:
        return {"note": self.cleaned_data["note"]} if self.cleaned_data.get("note") else {}


class RescheduleForm(forms.Form):
    new_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label=_("New date"))
    reason = forms.CharField(label=_("Reason"), max_length=255, required=False)

    def __init__(self, *args, visit: FollowUpVisit, **kwargs):
        super().__init__(*args, **kwargs)
        self.visit = visit
        self.fields["new_date"].help_text = _("Within the window %(start)s to %(end)s.") % {
            "start": visit.window_start,
            "end": visit.window_end,
        }

    def clean_new_date(self):
        value = self.cleaned_data["new_date"]
        if not self.visit.window_start <= value <= self.visit.window_end:
            raise forms.ValidationError(
                _("Choose a date within the window %(start)s to %(end)s.")
                % {"start": self.visit.window_start, "end": self.visit.window_end}
            )
        return value


class CancelVisitForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=255, help_text=_("Why this visit will not take place."))


def visit_page_view(model_admin, request, object_id):
    """The visit page: record it done (with the results asked for), reschedule within the window, or cancel."""
    visit = get_object_or_404(
        model_admin.get_queryset(request).select_related("infusion__patient__centre", "infusion__product", "rule"),
        pk=object_id,
    )
    if not model_admin.has_view_permission(request, visit):
        raise PermissionDenied
    today = workspace_today(request)
    language = get_language()
    visit_name = visit_label(visit.rule_code, visit.label, language)
    can_act = model_admin.has_change_permission(request, visit) and visit.status in RECORDABLE_STATUSES
    action = request.POST.get("action") if request.method == "POST" else None
    bound = {"complete": None, "reschedule": None, "cancel": None}
    if action in bound:
        if not can_act:
            raise PermissionDenied
        data = request.POST
        bound[action] = data
    complete = CompleteForm(bound["complete"], visit=visit, today=today, initial={"completed_on": today})
    reschedule = RescheduleForm(bound["reschedule"], visit=visit, initial={"new_date": visit.due_date})
    cancel = CancelVisitForm(bound["cancel"])
    fallback = patient_url(visit.infusion.patient_id)
    if request.GET.get("_changelist_filters"):
        # Opened from a worklist: go back to it, where the visit will have left the list.
        changelist = reverse("admin:surveillance_followupvisit_changelist")
        fallback = f"{changelist}?{request.GET['_changelist_filters']}"
    error = None
    if action:
        form = {"complete": complete, "reschedule": reschedule, "cancel": cancel}[action]
        if form.is_valid():
            try:
                if action == "complete":
                    entries, names = form.entries()
                    try:
                        visit_record(
                            visit,
                            completed_on=form.cleaned_data["completed_on"],
                            results=entries,
                            rest_normal="rest_normal" in request.POST,
                            notes=form.notes(),
                            actor=request.user,
                        )
                    except ResultsRefused as refused:
                        form.refusal_show(refused, names)
                        raise lifecycle.TransitionError(_("Some results cannot be recorded; see below.")) from None
                    done = _("Visit %(visit)s recorded as done.") % {"visit": visit_name}
                elif action == "reschedule":
                    lifecycle.visit_reschedule(
                        visit,
                        new_date=form.cleaned_data["new_date"],
                        reason=form.cleaned_data["reason"],
                        by=request.user,
                    )
                    done = _("Visit %(visit)s moved to %(day)s.") % {
                        "visit": visit_name,
                        "day": date_text(form.cleaned_data["new_date"]),
                    }
                else:
                    lifecycle.visit_cancel(visit, reason=form.cleaned_data["reason"], by=request.user)
                    done = _("Visit %(visit)s cancelled.") % {"visit": visit_name}
            except lifecycle.TransitionError as exc:
                error = str(exc)
            else:
                model_admin.message_user(request, done, messages.SUCCESS)
                return HttpResponseRedirect(_safe_next(request, fallback))
    else:
        audit_record(
            request, "view", object_type="followupvisit", object_id=visit.pk, patient_id=visit.infusion.patient_id
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{visit_name} — {visit.infusion.patient.display_name}",
        "visit_name": visit_name,
        "opts": model_admin.model._meta,
        "visit": visit,
        "patient": visit.infusion.patient,
        "complete_form": complete,
        "reschedule_form": reschedule,
        "cancel_form": cancel,
        "can_act": can_act,
        "error": error,
        "next": _safe_next(request, fallback),
        "changes": visit.changes.select_related("by").order_by("-at")[:20],
        "results": [
            (label(row.assessment, language), label(row.analyte, language) if row.analyte else "", row)
            for row in visit.assessment_results.all()
        ],
    }
    status = 400 if action and (error or any(f.is_bound and f.errors for f in (complete, reschedule, cancel))) else 200
    return TemplateResponse(request, "surveillance/admin/visit_page.html", context, status=status)


class CloseFollowUpForm(forms.Form):
    status = forms.ChoiceField(choices=[(s.value, s.label) for s in CLOSED_STATUSES], label=_("Follow-up ends because"))
    on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), label=_("On"))
    reason = forms.CharField(
        label=_("Reason"), max_length=255, help_text=_("Where the information comes from (kept with the closure).")
    )

    def __init__(self, *args, patient: Patient, today: dt.date, **kwargs):
        super().__init__(*args, **kwargs)
        self.patient = patient
        self.today = today

    def clean_on(self):
        value = self.cleaned_data["on"]
        if value > self.today:
            raise forms.ValidationError(_("The date cannot be in the future."))
        return value

    def clean(self):
        data = super().clean()
        if data.get("status") == PatientStatus.DECEASED and data.get("on"):
            try:
                infusions.patient_death_date_check(self.patient, data["on"])
            except infusions.InfusionRefused as exc:
                self.add_error("on", f"The date of death {exc.message}.")
        return data


def patient_close_view(model_admin, request, object_id):
    """Record a death, a withdrawal or a transfer: ``lifecycle.patient_close`` cancels the visits ahead."""
    patient = get_object_or_404(model_admin.get_queryset(request), pk=object_id)
    if not request.user.has_perm("surveillance.change_patient"):
        raise PermissionDenied
    form = CloseFollowUpForm(request.POST or None, patient=patient, today=workspace_today(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            cancelled = lifecycle.patient_close(
                patient, status=data["status"], on=data["on"], reason=data["reason"], by=request.user
            )
        except lifecycle.TransitionError as exc:
            form.add_error(None, str(exc))
        else:
            label = str(PatientStatus(data["status"]).label).lower()
            closed = _("Follow-up closed (%(reason)s): %(count)d visits cancelled.")
            model_admin.message_user(request, closed % {"reason": label, "count": cancelled})
            return HttpResponseRedirect(patient_url(patient.pk))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Close follow-up — %(patient)s") % {"patient": patient.display_name},
        "opts": model_admin.model._meta,
        "form": form,
        "patient": patient,
    }
    return TemplateResponse(
        request, "surveillance/admin/close_follow_up.html", context, status=400 if form.is_bound else 200
    )


def patient_log_attempt_view(model_admin, request, object_id):
    patient = get_object_or_404(model_admin.get_queryset(request), pk=object_id)
    if not request.user.has_perm("surveillance.add_contactattempt"):
        raise PermissionDenied
    form = ContactForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        lifecycle.contact_attempt_log(patient, by=request.user, **form.cleaned_data)
        model_admin.message_user(request, _("Contact attempt logged."), messages.SUCCESS)
        return HttpResponseRedirect(_safe_next(request, patient_url(patient.pk)))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Log a contact attempt — %(patient)s") % {"patient": patient.display_name},
        "opts": model_admin.model._meta,
        "form": form,
        "patient": patient,
        "attempts": patient.contact_attempts.select_related("by")[:20],
        "next": _safe_next(request, patient_url(patient.pk)),
    }
    return TemplateResponse(
        request, "surveillance/admin/log_attempt.html", context, status=400 if form.is_bound else 200
    )


def patient_schedule_view(model_admin, request, object_id):
    """The patient's next visits as a print-ready letter in the patient's language (for posting, or the desk)."""
    patient = get_object_or_404(model_admin.get_queryset(request).select_related("centre"), pk=object_id)
    if not model_admin.has_view_permission(request, patient):
        raise PermissionDenied
    schedule = printed_schedule(patient, workspace_today(request))
    audit_record(request, "print_schedule", object_type="patient", object_id=patient.pk, patient_id=patient.pk)
    return TemplateResponse(
        request,
        [f"surveillance/print/schedule.{schedule.language}.html", "surveillance/print/schedule.en.html"],
        {"schedule": schedule, "back_url": patient_url(patient.pk)},
    )


# --- Change a risk flag or the infusion date: preview the re-plan, confirm, apply ------------------------------


class ReplanForm(forms.Form):
    product = forms.ModelChoiceField(
        CarTProduct.objects.all(),
        required=False,
        to_field_name="code",
        label=_("Product"),
        help_text=_("Required while the product is to confirm (imported from a CAR-T procedure naming none)."),
    )
    infusion_date = forms.DateField(label=_("Infusion date"), widget=forms.DateInput(attrs={"type": "date"}))
    flag_code = forms.ChoiceField(
        choices=[("", _("— no risk flag change —")), *RiskFlagCode.choices], required=False, label=_("Risk flag")
    )
    flag_present = forms.TypedChoiceField(
        choices=[("1", _("Present")), ("0", _("Absent"))], coerce=lambda v: v == "1", initial="1", label=_("Flag is")
    )
    flag_source = forms.ChoiceField(choices=FlagSource.choices, required=False, label=_("Source"))
    flag_detail = forms.CharField(max_length=255, required=False, label=_("Detail"))
    flag_reference = forms.CharField(max_length=255, required=False, label=_("Source reference"))
    flag_observed_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), label=_("Observed on")
    )
    reason = forms.CharField(label=_("Reason"), max_length=255, help_text=_("Why the change (kept with the re-plan)."))
    fingerprint = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, infusion: Infusion, today: dt.date, **kwargs):
        super().__init__(*args, **kwargs)
        self.infusion = infusion
        self.today = today

    def clean_infusion_date(self):
        value = self.cleaned_data["infusion_date"]
        if value < EARLIEST_INFUSION or value > self.today:
            raise forms.ValidationError(
                _("The infusion date must be between %(earliest)s and today.") % {"earliest": EARLIEST_INFUSION}
            )
        try:
            infusions.infusion_check(self.infusion.patient, value, correcting=True)
        except infusions.InfusionRefused as exc:
            raise forms.ValidationError(f"The infusion date {exc.message}.") from exc
        return value

    def clean(self):
        data = super().clean()
        code = data.get("flag_code")
        if code:
            if not data.get("flag_source"):
                self.add_error("flag_source", _("Say where the flag comes from."))
            if not data.get("flag_observed_on"):
                self.add_error("flag_observed_on", _("Say when it was observed."))
            elif data["flag_observed_on"] > self.today:
                self.add_error("flag_observed_on", _("The observation date cannot be in the future."))
        product = data.get("product")
        if self.infusion.product_id is None and product is None:
            self.add_error("product", _("Name the product: it is to confirm."))
        renamed = product is not None and product.pk != self.infusion.product_id
        if data.get("infusion_date") == self.infusion.infusion_date and not code and not renamed and not self.errors:
            raise forms.ValidationError(_("Nothing to change: give a new infusion date or a risk flag."))
        return data


def _flag_apply(infusion: Infusion, data: dict, by) -> dict:
    """Write the requested risk flag, if any (inside the caller's transaction); returns what changed, for the audit."""
    if not data.get("flag_code"):
        return {}
    facts = FlagFacts(
        code=data["flag_code"],
        present=data["flag_present"],
        source=data["flag_source"],
        observed_on=data["flag_observed_on"],
        detail=data["flag_detail"],
        source_reference=data["flag_reference"],
    )
    risk_flag_write(infusion, facts, by=by)
    return {"risk_flag": {"code": data["flag_code"], "present": data["flag_present"]}}


def _values(data: dict) -> dict:
    """The infusion's own values the form asks for: its date, and its product when one is named."""
    values = {"infusion_date": data["infusion_date"]}
    if data.get("product") is not None:
        values["product"] = data["product"]
    return values


def _reload(infusion_id: int) -> Infusion:
    return Infusion.objects.select_related("product", "patient__centre", "protocol").get(pk=infusion_id)


def replan_preview(infusion: Infusion, data: dict, by) -> planning.PlanDiff:
    """The diff the change would cause, computed with the change written and then rolled back."""
    with transaction.atomic():
        _flag_apply(infusion, data, by)
        infusions.infusion_values_write(_reload(infusion.pk), _values(data))
        date_corrected = data["infusion_date"] != infusion.infusion_date
        diff = planning.infusion_plan_preview(_reload(infusion.pk), date_corrected=date_corrected)
        transaction.set_rollback(True)
    return diff


def diff_summary(diff: planning.PlanDiff) -> str:
    """``PlanDiff.summary`` in the reader's language."""
    return _("%(added)d added, %(moved)d moved, %(removed)d removed, %(changed)d changed, %(unchanged)d unchanged") % {
        "added": len(diff.added),
        "moved": len(diff.moved),
        "removed": len(diff.removed),
        "changed": len(diff.changed),
        "unchanged": diff.unchanged,
    }


def _diff_lines(diff: planning.PlanDiff) -> dict[str, list[dict]]:
    """The diff's visits as people read them: each named by its rule's label in the reader's language (not its
    code), section by section."""
    sections = ("added", "moved", "removed", "changed")
    codes = {ref.rule_code for section in sections for ref in getattr(diff, section)}
    own = dict(ProtocolRule.objects.filter(code__in=codes).order_by("protocol__version").values_list("code", "label"))
    language = get_language()
    return {
        section: [
            {**asdict(ref), "name": visit_label(ref.rule_code, own.get(ref.rule_code, ref.rule_code), language)}
            for ref in getattr(diff, section)
        ]
        for section in sections
    }


def infusion_replan_view(model_admin, request, object_id):
    infusion = get_object_or_404(
        model_admin.get_queryset(request).select_related("product", "patient__centre", "protocol"), pk=object_id
    )
    if not (
        request.user.has_perm("surveillance.change_infusion") and request.user.has_perm("surveillance.change_riskflag")
    ):
        raise PermissionDenied
    if infusion.superseded_by_id:
        raise Http404("a superseded infusion is not re-planned")
    today = workspace_today(request)
    form = ReplanForm(
        request.POST or None,
        infusion=infusion,
        today=today,
        initial={"infusion_date": infusion.infusion_date, "flag_observed_on": today, "product": infusion.product},
    )
    diff = None
    notice = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        confirm = data.get("fingerprint") if "confirm" in request.POST else None
        if confirm:
            try:
                with transaction.atomic():
                    changed = _flag_apply(infusion, data, request.user)
                    if data["infusion_date"] != infusion.infusion_date:
                        changed["infusion_date"] = [
                            infusion.infusion_date.isoformat(),
                            data["infusion_date"].isoformat(),
                        ]
                    product = data.get("product")
                    if product is not None and product.pk != infusion.product_id:
                        changed["product"] = [infusion.product.code if infusion.product else None, product.code]
                    audit_record(
                        request,
                        "change",
                        object_type="infusion",
                        object_id=infusion.pk,
                        patient_id=infusion.patient_id,
                        changes={**changed, "reason": data["reason"]},
                    )
                    applied = infusions.infusion_correct(
                        _reload(infusion.pk),
                        **_values(data),
                        by=request.user,
                        reason=data["reason"],
                        replan=True,
                        confirm=confirm,
                    )
            except planning.PlanChanged:
                notice = _("The plan changed since you looked at it: check the new preview and confirm again.")
            else:
                if applied:
                    done = _("Change applied, visits re-planned: %(summary)s.") % {"summary": diff_summary(applied)}
                else:
                    done = _("Change applied, follow-up is closed: no re-plan.")
                model_admin.message_user(request, done)
                return HttpResponseRedirect(patient_url(infusion.patient_id))
        diff = replan_preview(infusion, data, request.user)
        form = ReplanForm({**request.POST.dict(), "fingerprint": diff.fingerprint()}, infusion=infusion, today=today)
        form.is_valid()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Change risk flags or infusion date — %(patient)s") % {"patient": infusion.patient.display_name},
        "opts": model_admin.model._meta,
        "infusion": infusion,
        "patient": infusion.patient,
        "form": form,
        "diff": diff,
        "diff_summary": diff_summary(diff) if diff else "",
        "diff_lines": _diff_lines(diff) if diff else {},
        "today": today,
        "notice": notice,
        "flags": infusion.risk_flags.all(),
    }
    status = 400 if request.method == "POST" and form.errors else 200
    return TemplateResponse(request, "surveillance/admin/replan.html", context, status=status)
