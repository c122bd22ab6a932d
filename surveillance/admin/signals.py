"""The physician's second-cancer signal worklist: each review with the evidence that raised it, and the three
decisions (confirm a second cancer, order the work-up, dismiss with a reason) as actions that call the review
service, so the admin writes nothing the importer's path would not."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from surveillance import models as m
from surveillance.admin.base import CentreScopedAdmin
from surveillance.admin.display import patient_cell
from surveillance.admin.worklists import WorklistFilter, workspace_today
from surveillance.models.events import MalignancyType
from surveillance.signals import review as signal_review
from surveillance.signals.rules import PRIORITIES

PATIENT_SEARCH = ("mrn", "family_name", "given_name")


class ConfirmForm(forms.Form):
    diagnosis_date = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    malignancy_type = forms.ChoiceField(choices=MalignancyType.choices)
    description = forms.CharField(max_length=255, required=False, help_text="E.g. the histology.")

    def __init__(self, *args, today=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today

    def clean_diagnosis_date(self):
        diagnosed = self.cleaned_data["diagnosis_date"]
        if self.today is not None and diagnosed > self.today:
            raise forms.ValidationError("The diagnosis date cannot be in the future.")
        return diagnosed


class WorkupForm(forms.Form):
    items = forms.MultipleChoiceField(
        choices=m.WorkupItem.choices, widget=forms.CheckboxSelectMultiple, label="Work-up ordered"
    )
    note = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2}))


class DismissForm(forms.Form):
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why this is not a second cancer."
    )


class SignalInline(admin.TabularInline):
    model = m.Signal
    fields = ("observed_on", "day", "code", "grade", "summary", "source", "ruleset")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _decision_page(modeladmin, request, queryset, form, *, title: str, action: str):
    return TemplateResponse(
        request,
        "surveillance/admin/bulk_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "form": form,
            "objects": queryset,
            "action": action,
            "opts": modeladmin.model._meta,
        },
        status=400 if form.is_bound else 200,
    )


def _apply(modeladmin, request, queryset, decide, done_message: str) -> None:
    done = 0
    for review in queryset.select_related("infusion", "patient"):
        try:
            decide(review)
            done += 1
        except signal_review.SignalError as exc:
            modeladmin.message_user(request, f"Review {review.pk}: {exc}.", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{done} {done_message}", messages.SUCCESS)


@admin.register(m.SignalReview)
class SignalReviewAdmin(CentreScopedAdmin):
    centre_path = "patient__centre"
    patient_path = "patient"
    list_display = ("patient_link", "label", "priority_badge", "state", "first_observed_on", "last_observed_on")
    list_display_links = ("label",)
    list_filter = (WorklistFilter, "status", "kind")
    search_fields = tuple(f"patient__{f}" for f in PATIENT_SEARCH)
    list_select_related = ("patient",)
    ordering = ("priority", "opened_at", "pk")
    inlines = (SignalInline,)
    actions = ("confirm_second_cancer", "order_workup", "dismiss")
    readonly_fields = (
        "patient",
        "infusion",
        "kind",
        "label",
        "priority",
        "suggested_type",
        "status",
        "opened_at",
        "first_observed_on",
        "last_observed_on",
        "escalated_at",
        "decided_at",
        "decided_by",
        "reason",
        "workup",
        "malignancy_event",
    )
    fields = readonly_fields

    @admin.display(description=_("Patient"))
    def patient_link(self, obj):
        return patient_cell(obj.patient)

    @admin.display(description=_("Priority"), ordering="priority")
    def priority_badge(self, obj):
        names = {rank: name for name, rank in PRIORITIES.items()}
        hot = " cw-escalated" if obj.priority == 1 else ""
        return format_html('<span class="cw-badge{}">{}</span>', hot, names.get(obj.priority, obj.priority))

    @admin.display(description=_("State"))
    def state(self, obj):
        if obj.escalated_at and obj.status == m.SignalReviewStatus.OPEN:
            return mark_safe('<span class="cw-badge cw-escalated">escalated</span>')
        return obj.get_status_display()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Decisions are the actions below; a review's page is read-only, so no form can write around them.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    # --- decisions --------------------------------------------------------------------------------------------
    @admin.action(
        description=_("Confirm a second cancer (opens the malignancy event and its reports)"), permissions=["change"]
    )
    def confirm_second_cancer(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Confirm one review at a time.", messages.ERROR)
            return None
        review = queryset.get()
        today = workspace_today(request)
        data = request.POST if "apply" in request.POST else None
        initial = {"diagnosis_date": review.last_observed_on, "malignancy_type": review.suggested_type}
        form = ConfirmForm(data, initial=initial, today=today)
        if form.is_bound and form.is_valid():
            _apply(
                self,
                request,
                queryset,
                lambda r: signal_review.signal_review_confirm(r, by=request.user, **form.cleaned_data),
                "second cancer confirmed; its reporting steps are open.",
            )
            return None
        return _decision_page(
            self, request, queryset, form, title="Confirm a second cancer", action="confirm_second_cancer"
        )

    @admin.action(description=_("Order the work-up (bone marrow, T-cell clonality, biopsy)"), permissions=["change"])
    def order_workup(self, request, queryset):
        form = WorkupForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            _apply(
                self,
                request,
                queryset,
                lambda r: signal_review.signal_review_order_workup(r, by=request.user, **form.cleaned_data),
                "work-up order(s) recorded.",
            )
            return None
        return _decision_page(self, request, queryset, form, title="Order the work-up", action="order_workup")

    @admin.action(description=_("Dismiss with a reason"), permissions=["change"])
    def dismiss(self, request, queryset):
        form = DismissForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            _apply(
                self,
                request,
                queryset,
                lambda r: signal_review.signal_review_dismiss(r, by=request.user, **form.cleaned_data),
                "review(s) dismissed.",
            )
            return None
        return _decision_page(self, request, queryset, form, title="Dismiss signals", action="dismiss")
