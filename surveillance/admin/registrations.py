"""ModelAdmin registrations. Lists are searchable by MRN and patient name wherever a patient is involved; lists of
visits, patients, reminders, requests and reporting steps carry the worklist filters and bulk actions."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from surveillance import models as m
from surveillance.admin import api_tokens as _api_tokens_admin  # noqa: F401  (registers the API tokens)
from surveillance.admin import audit as _audit_admin  # noqa: F401  (registers the audit trail)
from surveillance.admin import ehr_pull as _ehr_pull_admin  # noqa: F401  (registers EHR connections and pulls)
from surveillance.admin import identity as _identity_admin  # noqa: F401  (registers the identity reviews)
from surveillance.admin import letters as _letters_admin  # noqa: F401  (registers the letter and call tasks)
from surveillance.admin import malignancy as _malignancy_admin  # noqa: F401  (registers events and steps)
from surveillance.admin import signals as _signals_admin  # noqa: F401  (registers the signal reviews)
from surveillance.admin import webhooks as _webhooks_admin  # noqa: F401  (registers the webhook delivery log)
from surveillance.admin import worklists as wl
from surveillance.admin.base import CentreScopedAdmin
from surveillance.admin.callsheet import CSV_COLUMNS, CallRow, last_contact_text, window_text, with_call_columns
from surveillance.admin.display import date_text, patient_cell
from surveillance.admin.patient_page import (
    infusion_replan_view,
    patient_close_view,
    patient_log_attempt_view,
    patient_page_context,
    patient_schedule_view,
    visit_page_view,
)
from surveillance.care import contact_details, infusions, reasons
from surveillance.seeds.labels import visit_label

PATIENT_SEARCH = ("mrn", "family_name", "given_name")


class InfusionForm(forms.ModelForm):
    """The admin's infusion form: a new infusion that contradicts the patient's record is a form error."""

    def clean(self):
        data = super().clean()
        if data.get("patient") and data.get("infusion_date"):
            try:
                infusions.infusion_check(data["patient"], data["infusion_date"])
            except infusions.InfusionRefused as exc:
                self.add_error(exc.field_name, exc.message)
        return data


class PatientForm(forms.ModelForm):
    """The admin's patient form: a birth date after one of the patient's infusions is a form error."""

    def clean_birth_date(self):
        value = self.cleaned_data["birth_date"]
        try:
            infusions.patient_birth_date_check(self.instance, value)
        except infusions.InfusionRefused as exc:
            raise forms.ValidationError(exc.message) from exc
        return value

    def clean(self):
        cleaned = super().clean()
        centre = cleaned.get("centre") or getattr(self.instance, "centre", None)
        if "phone" in cleaned:
            try:
                cleaned["phone"] = contact_details.phone_normalise(cleaned["phone"], centre.country if centre else None)
            except contact_details.PhoneInvalid as exc:
                self.add_error("phone", str(exc))
        return cleaned


def _via(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}__{field}" for field in PATIENT_SEARCH)


class CallColumnsMixin:
    """The columns a caller works from (``callsheet``), for lists whose rows lead to a patient and a visit."""

    def call_row(self, obj) -> CallRow:
        raise NotImplementedError

    def get_queryset(self, request):
        return with_call_columns(super().get_queryset(request), self.patient_path, wl.workspace_today(request))

    @admin.display(description=_("Phone / preferred contact"))
    def phone_col(self, obj):
        row = self.call_row(obj)
        return format_html(
            '<span class="cw-phone">{}</span><br><small>{}</small>',
            row.patient.phone or gettext("no phone"),
            row.preferred_contact(),
        )

    @admin.display(description=_("Language"))
    def language_col(self, obj):
        return self.call_row(obj).language()

    @admin.display(description=_("Window"))
    def window(self, obj):
        return window_text(self.call_row(obj))

    @admin.display(description=_("Days late / left"))
    def days_col(self, obj):
        row = self.call_row(obj)
        text = row.days()
        return format_html('<span class="cw-late">{}</span>', text) if row.is_late() else text

    @admin.display(description=_("Last contact attempt"), ordering="cw_last_contact_at")
    def last_contact_col(self, obj):
        return last_contact_text(self.call_row(obj))

    def call_csv(self, request, queryset, extra: list[tuple[str, object]]):
        columns = [(name, lambda obj, get=get: get(self.call_row(obj))) for name, get in CSV_COLUMNS]
        return wl.export_csv(self, request, queryset, columns=columns + extra, patient_path=self.patient_path)


class ContactActionsMixin:
    """The "mark contacted" and "log attempt" bulk actions for lists whose rows lead to a patient."""

    def has_contact_permission(self, request):
        return request.user.has_perm("surveillance.add_contactattempt")

    @admin.action(description=_("Mark contacted (reached by phone)"), permissions=["contact"])
    def mark_contacted(self, request, queryset):
        return wl.mark_contacted(self, request, queryset, patient_path=self.patient_path)

    @admin.action(description=_("Log a contact attempt…"), permissions=["contact"])
    def log_attempt(self, request, queryset):
        return wl.log_attempt(self, request, queryset, patient_path=self.patient_path)


class CentreClosureInline(admin.TabularInline):
    model = m.CentreClosure
    extra = 1
    verbose_name = "day the clinic is closed"
    verbose_name_plural = "days the clinic is closed (besides its weekly closed days and public holidays)"


@admin.register(m.TreatmentCentre)
class TreatmentCentreAdmin(CentreScopedAdmin):
    centre_path = ""
    list_display = ("name", "code", "time_zone", "phone", "care_team_email")
    search_fields = ("name", "code")
    inlines = (CentreClosureInline,)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        form.instance.closures_changed()


@admin.register(m.CentreMembership)
class CentreMembershipAdmin(CentreScopedAdmin):
    list_display = ("user", "centre", "role")
    list_filter = ("role", ("centre", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__username",)


@admin.register(m.CarTProduct)
class CarTProductAdmin(admin.ModelAdmin):
    list_display = ("brand", "generic_name", "manufacturer", "target_antigen", "vector_type", "safety_contact_phone")
    list_filter = ("target_antigen", "vector_type")
    search_fields = ("brand", "generic_name", "abbreviation")


@admin.register(m.ProductCode)
class ProductCodeAdmin(admin.ModelAdmin):
    list_display = ("code", "system", "product", "marks_infusion", "display")
    list_filter = ("system", "marks_infusion")
    search_fields = ("code", "display")
    list_select_related = ("product",)


@admin.register(m.Patient)
class PatientAdmin(CallColumnsMixin, ContactActionsMixin, CentreScopedAdmin):
    patient_path = ""
    list_display = (
        "name",
        "phone_col",
        "language_col",
        "next_visit",
        "next_due",
        "window",
        "days_col",
        "last_contact_col",
        "attempts",
        "follow_up",
        "quick_log",
    )
    list_display_links = ("name",)
    list_filter = (wl.WorklistFilter, "status", "ladder_stage", ("centre", admin.RelatedOnlyFieldListFilter))
    search_fields = PATIENT_SEARCH
    list_select_related = ("centre",)
    readonly_fields = ("status", "status_date", "status_reason_shown", "ladder_stage", "created_at", "updated_at")
    fieldsets = (
        (_("Demographics"), {"fields": ("centre", "mrn", "family_name", "given_name", "birth_date", "sex")}),
        (
            _("Contact"),
            {
                "fields": (
                    "email",
                    "phone",
                    "preferred_language",
                    "time_zone",
                    "contact_consent",
                    "sms_consent",
                    "preferred_channel",
                    "reminders_opted_out_at",
                )
            },
        ),
        (_("Follow-up"), {"fields": ("status", "status_date", "status_reason_shown", "ladder_stage")}),
        (_("Source"), {"classes": ("collapse",), "fields": ("source_system", "source_id", "created_at", "updated_at")}),
    )
    change_form_template = "surveillance/admin/patient_page.html"

    @admin.display(description=_("status reason"))
    def status_reason_shown(self, obj):
        return reasons.reason_shown(obj.status_reason)

    actions = ["mark_contacted", "log_attempt", "export_csv"]
    form = PatientForm

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(attempt_count=Count("contact_attempts"))
            .order_by("family_name", "given_name", "pk")
        )

    def call_row(self, obj) -> CallRow:
        return CallRow.of(obj, obj)

    @admin.display(description=_("Patient"), ordering="family_name")
    def name(self, obj):
        return format_html('{} <small class="cw-mrn">{}</small>', obj.display_name, obj.mrn)

    @admin.display(description=_("Next visit"))
    def next_visit(self, obj):
        return self.call_row(obj).visit_name() or "—"

    @admin.display(description=_("Due"), ordering="cw_next_due_date")
    def next_due(self, obj):
        return date_text(obj.cw_next_due_date)

    @admin.display(description=_("Attempts"), ordering="attempt_count")
    def attempts(self, obj):
        return obj.attempt_count

    @admin.display(description=_("Follow-up"), ordering="ladder_stage")
    def follow_up(self, obj):
        if obj.status == m.PatientStatus.ACTIVE:
            return obj.get_ladder_stage_display()
        return obj.get_status_display()

    @admin.display(description="")
    def quick_log(self, obj):
        url = reverse("admin:surveillance_patient_log_attempt", args=[obj.pk])
        return format_html('<a class="button cw-quick" href="{}">{}</a>', url, gettext("Log attempt"))

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        extra = [
            (_("Centre"), lambda p: p.centre.code),
            (_("Status"), lambda p: p.get_status_display()),
            (_("Ladder stage"), lambda p: p.get_ladder_stage_display()),
        ]
        return self.call_csv(request, queryset, extra)

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/log-attempt/",
                self.admin_site.admin_view(lambda r, object_id: patient_log_attempt_view(self, r, object_id)),
                name="surveillance_patient_log_attempt",
            ),
            path(
                "<path:object_id>/close/",
                self.admin_site.admin_view(lambda r, object_id: patient_close_view(self, r, object_id)),
                name="surveillance_patient_close",
            ),
            path(
                "<path:object_id>/schedule/",
                self.admin_site.admin_view(lambda r, object_id: patient_schedule_view(self, r, object_id)),
                name="surveillance_patient_schedule",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None and self.has_view_permission(request, obj):
            extra_context = {**(extra_context or {}), **patient_page_context(request, obj)}
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(m.Infusion)
class InfusionAdmin(CentreScopedAdmin):
    centre_path = "patient__centre"
    patient_path = "patient"
    list_display = ("__str__", "patient", "product", "infusion_date", "protocol", "replan")
    list_filter = (wl.WorklistFilter, "product", "protocol")
    search_fields = _via("patient")
    list_select_related = ("patient", "product", "protocol")
    autocomplete_fields = ("patient",)
    form = InfusionForm

    @admin.display(description=_("Change"))
    def replan(self, obj) -> str:
        url = reverse("admin:surveillance_infusion_replan", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, "Name the product" if obj.product_id is None else "Re-plan")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("protocol", "superseded_by")
        # The date, the product and the protocol change only through a confirmed re-plan.
        return ("patient", "product", "infusion_date", "protocol", "superseded_by")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
        else:
            infusions.infusion_record(obj, by=request.user, reason="infusion entered in the admin")

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/replan/",
                self.admin_site.admin_view(lambda r, object_id: infusion_replan_view(self, r, object_id)),
                name="surveillance_infusion_replan",
            )
        ]
        return urls + super().get_urls()


@admin.register(m.RiskFlag)
class RiskFlagAdmin(CentreScopedAdmin):
    """Read-only here: a flag changes through the infusion's re-plan page, which shows the diff first."""

    centre_path = "infusion__patient__centre"
    patient_path = "infusion__patient"
    list_display = ("infusion", "code", "present", "source", "source_reference", "observed_on", "recorded_by")
    list_filter = ("code", "source", "present")
    search_fields = _via("infusion__patient")
    list_select_related = ("infusion", "recorded_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.ContactAttempt)
class ContactAttemptAdmin(CentreScopedAdmin):
    centre_path = "patient__centre"
    patient_path = "patient"
    list_display = ("patient", "attempted_at", "method", "reached", "by")
    search_fields = _via("patient")
    list_select_related = ("patient", "by")
    autocomplete_fields = ("patient",)
    exclude = ("by",)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.by = request.user
        super().save_model(request, obj, form, change)


class ProtocolRuleInline(admin.TabularInline):
    model = m.ProtocolRule
    fields = (
        "position",
        "code",
        "label",
        "kind",
        "offset_amount",
        "offset_unit",
        "repeat_every",
        "repeat_until",
        "lifelong",
        "window_before_days",
        "window_after_days",
        "condition",
    )
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(m.Protocol)
class ProtocolAdmin(admin.ModelAdmin):
    """Protocols are data loaded from seed files; versions are read here and upgraded through the preview page."""

    list_display = ("code", "version", "variant", "status", "activated_at", "upgrade_link")
    list_filter = ("code", "status", "variant")
    search_fields = ("code", "name")
    inlines = [ProtocolRuleInline]

    @admin.display(description="")
    def upgrade_link(self, obj):
        url = reverse("admin:protocol_upgrade", args=[obj.pk])
        return format_html('<a href="{}">Preview cohort upgrade</a>', url)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in m.Protocol._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(m.ProtocolRule)
class ProtocolRuleAdmin(admin.ModelAdmin):
    list_display = ("protocol", "code", "label", "kind", "offset_amount", "offset_unit")
    list_filter = ("protocol",)
    search_fields = ("code", "label")
    list_select_related = ("protocol",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.FollowUpVisit)
class FollowUpVisitAdmin(CallColumnsMixin, ContactActionsMixin, CentreScopedAdmin):
    """A visit's page is its action page (record done, reschedule, cancel): no field is edited directly."""

    centre_path = "infusion__patient__centre"
    patient_path = "infusion__patient"
    list_display = (
        "patient_col",
        "phone_col",
        "language_col",
        "visit_col",
        "due_col",
        "window",
        "days_col",
        "last_contact_col",
        "status_col",
    )
    list_display_links = ("visit_col",)
    list_filter = (wl.WorklistFilter, "status", "kind", wl.RuleCodeFilter)
    search_fields = _via("infusion__patient")
    list_select_related = ("infusion__patient",)
    ordering = ("due_date", "pk")
    actions = ["mark_contacted", "log_attempt", "cancel_with_reason", "undo_ehr_completion", "export_csv"]

    @admin.display(description=_("Patient"), ordering="infusion__patient__family_name")
    def patient_col(self, obj):
        return patient_cell(obj.infusion.patient)

    @admin.display(description=_("Visit"), ordering="rule_code")
    def visit_col(self, obj):
        # The link (added by the list, keeping its filters) opens the visit page, which returns to the list.
        return format_html('<span class="cw-visit">{}</span>', visit_label(obj.rule_code, obj.label, get_language()))

    # The model's own columns, titled in the reader's language (the field names are not translated)
    @admin.display(description=_("Due date"), ordering="due_date")
    def due_col(self, obj):
        return date_text(obj.due_date)

    @admin.display(description=_("Status"), ordering="status")
    def status_col(self, obj):
        return obj.get_status_display()

    def call_row(self, obj) -> CallRow:
        return CallRow.of(obj, obj.infusion.patient, scheduled=obj.status == m.VisitStatus.SCHEDULED)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return visit_page_view(self, request, object_id)

    @admin.action(description=_("Cancel with a reason…"), permissions=["change"])
    def cancel_with_reason(self, request, queryset):
        return wl.cancel_with_reason(self, request, queryset)

    @admin.action(description=_("Undo EHR completion (schedule again)…"), permissions=["change"])
    def undo_ehr_completion(self, request, queryset):
        return wl.undo_ehr_completion(self, request, queryset)

    @admin.action(description=_("Export selected as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):
        return self.call_csv(
            request,
            queryset,
            [(_("Visit code"), lambda v: v.rule_code), (_("Status"), lambda v: v.get_status_display())],
        )


@admin.register(m.VisitChange)
class VisitChangeAdmin(CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    patient_path = "visit__infusion__patient"
    list_display = ("visit", "action", "at", "by")
    search_fields = _via("visit__infusion__patient")
    list_select_related = ("visit", "by")

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.ConditionDecision)
class ConditionDecisionAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    patient_path = "infusion__patient"
    list_display = ("infusion", "condition", "active", "until", "decided_on", "decided_by")
    search_fields = _via("infusion__patient")
    list_select_related = ("infusion", "decided_by")


@admin.register(m.PatientRequest)
class PatientRequestAdmin(ContactActionsMixin, CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    patient_path = "visit__infusion__patient"
    list_display = ("patient_col", "visit", "kind", "message", "received_at", "handled_at", "handled_by")
    list_filter = (wl.WorklistFilter, "kind")
    search_fields = _via("visit__infusion__patient")
    list_select_related = ("visit__infusion__patient", "handled_by")
    actions = ["handle", "mark_contacted"]
    readonly_fields = ("visit", "kind", "message", "received_at", "handled_at", "handled_by")

    @admin.display(description=_("Patient"))
    def patient_col(self, obj):
        return patient_cell(obj.visit.infusion.patient)

    @admin.action(description=_("Mark handled"), permissions=["change"])
    def handle(self, request, queryset):
        return wl.handle_requests(self, request, queryset)

    def has_add_permission(self, request):
        return False


@admin.register(m.Reminder)
class ReminderAdmin(ContactActionsMixin, CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    patient_path = "visit__infusion__patient"
    list_display = (
        "id",
        "patient_col",
        "visit",
        "audience",
        "purpose",
        "channel",
        "send_after",
        "status",
        "attempts",
        "last_smtp_code",
        "last_error",
    )
    list_filter = (wl.WorklistFilter, "status", "channel", "audience", "purpose")
    search_fields = _via("visit__infusion__patient")
    list_select_related = ("visit__infusion__patient",)
    actions = ["mark_contacted", "log_attempt"]

    @admin.display(description=_("Patient"))
    def patient_col(self, obj):
        return patient_cell(obj.visit.infusion.patient)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.Delivery)
class DeliveryAdmin(CentreScopedAdmin):
    centre_path = "reminder__visit__infusion__patient__centre"
    patient_path = "reminder__visit__infusion__patient"
    list_display = ("reminder", "attempt", "at", "outcome", "smtp_code", "possible_duplicate")
    list_filter = ("outcome", "possible_duplicate")
    search_fields = _via("reminder__visit__infusion__patient")
    list_select_related = ("reminder",)

    def has_change_permission(self, request, obj=None):
        return False
