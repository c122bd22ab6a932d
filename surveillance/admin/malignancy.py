"""The second-malignancy workflow: record an event (its reporting steps open with due dates), see the product's
manufacturer contact, close each step with who, when and its reference; steps left open past due are escalated."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Count, ExpressionWrapper, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from surveillance import models as m
from surveillance.admin.base import CentreScopedAdmin, ReadOnlyAdmin
from surveillance.admin.display import date_text, patient_cell
from surveillance.admin.worklists import WorklistFilter, workspace_today
from surveillance.care import reporting
from surveillance.models.events import ReportingStepKind

PATIENT_SEARCH = ("mrn", "family_name", "given_name")


class MalignancyEventForm(forms.ModelForm):
    class Meta:
        model = m.MalignancyEvent
        fields = ("infusion", "diagnosis_date", "malignancy_type", "confirmed", "description", "transgene_status")
        widgets = {"diagnosis_date": forms.DateInput(attrs={"type": "date"})}

    def clean(self):
        data = super().clean()
        infusion, diagnosed = data.get("infusion"), data.get("diagnosis_date")
        if diagnosed and self.instance.pk is None:
            if self.today is not None and diagnosed > self.today:
                self.add_error("diagnosis_date", "The diagnosis date cannot be in the future.")
            if infusion is not None and diagnosed < infusion.infusion_date:
                self.add_error("diagnosis_date", "A second malignancy is diagnosed after the infusion.")
        return data

    today = None


class StepCompleteForm(forms.Form):
    reference = forms.CharField(max_length=128, required=False, help_text="E.g. the MedWatch report number.")
    notes = forms.CharField(max_length=500, required=False)


@admin.register(m.MalignancyEvent)
class MalignancyEventAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    patient_path = "infusion__patient"
    form = MalignancyEventForm
    list_display = ("patient_link", "malignancy_type", "diagnosis_date", "confirmed", "transgene_status", "open_steps")
    list_display_links = ("malignancy_type",)
    list_filter = ("malignancy_type", "transgene_status", "confirmed")
    search_fields = tuple(f"infusion__patient__{f}" for f in PATIENT_SEARCH)
    list_select_related = ("infusion__patient",)
    autocomplete_fields = ("infusion",)
    change_form_template = "surveillance/admin/malignancy_event.html"

    @admin.display(description=_("Patient"))
    def patient_link(self, obj):
        return patient_cell(obj.infusion.patient)

    @admin.display(description=_("Open steps"))
    def open_steps(self, obj):
        return obj.open_steps

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(open_steps=Count("reporting_steps", filter=Q(reporting_steps__completed_at__isnull=True)))
        )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.today = workspace_today(request)
        return form

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ("infusion", "diagnosis_date", "malignancy_type", "recorded_by", "recorded_at")
        return ()

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("diagnosis_date", workspace_today(request))
        return initial

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        event = reporting.malignancy_event_record(
            obj.infusion,
            diagnosis_date=obj.diagnosis_date,
            malignancy_type=obj.malignancy_type,
            confirmed=obj.confirmed,
            description=obj.description,
            by=request.user,
        )
        if obj.transgene_status != event.transgene_status:
            m.MalignancyEvent.objects.filter(pk=event.pk).update(transgene_status=obj.transgene_status)
        obj.pk, obj.recorded_at, obj.recorded_by = event.pk, event.recorded_at, request.user

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            today = workspace_today(request)
            steps = list(obj.reporting_steps.select_related("completed_by").order_by("due_date", "kind"))
            for step in steps:
                step.escalated = step.completed_at is None and step.due_date < today
                step.form = StepCompleteForm(prefix=f"step{step.pk}")
                step.needs_reference = step.kind == ReportingStepKind.MEDWATCH
            context.update(
                steps=steps,
                product=obj.infusion.product,
                patient=obj.infusion.patient,
                can_complete_steps=request.user.has_perm("surveillance.change_reportingstep"),
                history=m.AuditEntry.objects.filter(patient_id=obj.infusion.patient_id)
                .filter(object_type__in=["malignancy_event", "reporting_step", "malignancyevent"])
                .select_related("actor")[:30],
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/steps/<int:step_id>/complete/",
                self.admin_site.admin_view(self.step_complete_view),
                name="surveillance_malignancyevent_step_complete",
            )
        ]
        return urls + super().get_urls()

    def step_complete_view(self, request, object_id, step_id):
        event = get_object_or_404(self.get_queryset(request), pk=object_id)
        step = get_object_or_404(m.ReportingStep, pk=step_id, event=event)
        if request.method != "POST" or not request.user.has_perm("surveillance.change_reportingstep"):
            raise PermissionDenied
        form = StepCompleteForm(request.POST, prefix=f"step{step.pk}")
        url = reverse("admin:surveillance_malignancyevent_change", args=[event.pk])
        if form.is_valid():
            try:
                reporting.reporting_step_complete(step, by=request.user, **form.cleaned_data)
            except reporting.StepError as exc:
                self.message_user(request, f"{step.get_kind_display()}: {exc}.", messages.ERROR)
            else:
                self.message_user(request, f"{step.get_kind_display()}: done.", messages.SUCCESS)
        else:
            self.message_user(request, "Check the reference and notes.", messages.ERROR)
        return HttpResponseRedirect(url)


@admin.register(m.ReportingStep)
class ReportingStepAdmin(ReadOnlyAdmin, CentreScopedAdmin):
    centre_path = "event__infusion__patient__centre"
    patient_path = "event__infusion__patient"
    list_display = ("patient_link", "event_link", "kind", "due_date", "state", "completed_by", "reference")
    list_display_links = ("kind",)
    list_filter = (WorklistFilter, "kind")
    search_fields = tuple(f"event__infusion__patient__{f}" for f in PATIENT_SEARCH)
    list_select_related = ("event__infusion__patient", "completed_by")
    ordering = ("due_date", "pk")

    @admin.display(description=_("Patient"))
    def patient_link(self, obj):
        return patient_cell(obj.event.infusion.patient)

    @admin.display(description=_("Event"))
    def event_link(self, obj):
        url = reverse("admin:surveillance_malignancyevent_change", args=[obj.event_id])
        return format_html(
            '<a href="{}">{} ({})</a>',
            url,
            obj.event.get_malignancy_type_display(),
            date_text(obj.event.diagnosis_date),
        )

    @admin.display(description=_("State"))
    def state(self, obj):
        if obj.completed_at:
            return format_html(
                '<span class="cw-badge cw-done">done {}</span>', date_text(timezone.localdate(obj.completed_at))
            )
        if obj.escalated:
            return mark_safe('<span class="cw-badge cw-escalated">escalated</span>')
        return mark_safe('<span class="cw-badge">open</span>')

    def get_queryset(self, request):
        overdue = Q(completed_at__isnull=True, due_date__lt=workspace_today(request))
        return super().get_queryset(request).annotate(escalated=ExpressionWrapper(overdue, output_field=BooleanField()))
