"""ModelAdmin registrations. Lists are searchable by MRN and patient name wherever a patient is involved."""

from __future__ import annotations

from django.contrib import admin

from surveillance import models as m
from surveillance.admin.base import CentreScopedAdmin

PATIENT_SEARCH = ("mrn", "family_name", "given_name")


def _via(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}__{field}" for field in PATIENT_SEARCH)


@admin.register(m.TreatmentCentre)
class TreatmentCentreAdmin(CentreScopedAdmin):
    centre_path = ""
    list_display = ("name", "code", "time_zone", "care_team_email")
    search_fields = ("name", "code")


@admin.register(m.CentreMembership)
class CentreMembershipAdmin(CentreScopedAdmin):
    list_display = ("user", "centre", "role")
    list_filter = ("role", "centre")
    search_fields = ("user__username",)


@admin.register(m.CarTProduct)
class CarTProductAdmin(admin.ModelAdmin):
    list_display = ("brand", "generic_name", "target_antigen", "vector_type", "costimulation", "approved_on")
    list_filter = ("target_antigen", "vector_type")
    search_fields = ("brand", "generic_name", "abbreviation")


@admin.register(m.ProductCode)
class ProductCodeAdmin(admin.ModelAdmin):
    list_display = ("code", "system", "product", "marks_infusion", "display")
    list_filter = ("system", "marks_infusion")
    search_fields = ("code", "display")


class InfusionInline(admin.TabularInline):
    model = m.Infusion
    fk_name = "patient"
    fields = ("product", "infusion_date", "lot_number", "protocol", "superseded_by")
    readonly_fields = ("protocol", "superseded_by")
    extra = 0
    show_change_link = True


@admin.register(m.Patient)
class PatientAdmin(CentreScopedAdmin):
    list_display = ("mrn", "family_name", "given_name", "centre", "status", "ladder_stage")
    list_filter = ("status", "ladder_stage", "centre")
    search_fields = PATIENT_SEARCH
    list_select_related = ("centre",)
    readonly_fields = ("status", "status_date", "status_reason", "ladder_stage", "created_at", "updated_at")
    inlines = [InfusionInline]


@admin.register(m.Infusion)
class InfusionAdmin(CentreScopedAdmin):
    centre_path = "patient__centre"
    list_display = ("__str__", "patient", "product", "infusion_date", "protocol")
    list_filter = ("product", "protocol")
    search_fields = _via("patient")
    list_select_related = ("patient", "product", "protocol")
    autocomplete_fields = ("patient",)
    readonly_fields = ("protocol", "superseded_by")


@admin.register(m.RiskFlag)
class RiskFlagAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    list_display = ("infusion", "code", "present", "source", "observed_on")
    list_filter = ("code", "source", "present")
    search_fields = _via("infusion__patient")


@admin.register(m.ContactAttempt)
class ContactAttemptAdmin(CentreScopedAdmin):
    centre_path = "patient__centre"
    list_display = ("patient", "attempted_at", "method", "reached", "by")
    search_fields = _via("patient")


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
        return obj is not None and obj.status == m.ProtocolStatus.DRAFT and super().has_change_permission(request, obj)


@admin.register(m.Protocol)
class ProtocolAdmin(admin.ModelAdmin):
    list_display = ("code", "version", "variant", "status", "activated_at")
    list_filter = ("code", "status", "variant")
    search_fields = ("code", "name")
    inlines = [ProtocolRuleInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != m.ProtocolStatus.DRAFT:
            return [f.name for f in m.Protocol._meta.fields]
        return ("content_hash", "activated_at", "activated_by")


@admin.register(m.ProtocolRule)
class ProtocolRuleAdmin(admin.ModelAdmin):
    list_display = ("protocol", "code", "label", "kind", "offset_amount", "offset_unit")
    list_filter = ("protocol",)
    search_fields = ("code", "label")

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.protocol.status != m.ProtocolStatus.DRAFT:
            return False
        return super().has_change_permission(request, obj)


@admin.register(m.FollowUpVisit)
class FollowUpVisitAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    list_display = ("infusion", "rule_code", "occurrence", "due_date", "window_start", "window_end", "status")
    list_filter = ("status", "kind", "rule_code")
    search_fields = _via("infusion__patient")
    list_select_related = ("infusion",)
    date_hierarchy = "due_date"
    readonly_fields = (
        "infusion",
        "rule",
        "rule_code",
        "occurrence",
        "sequence",
        "status",
        "status_changed_at",
        "status_changed_by",
        "planner_cancelled",
        "reminders_planned_for",
    )


@admin.register(m.VisitChange)
class VisitChangeAdmin(CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    list_display = ("visit", "action", "at", "by")
    search_fields = _via("visit__infusion__patient")

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.ConditionDecision)
class ConditionDecisionAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    list_display = ("infusion", "condition", "active", "until", "decided_on", "decided_by")
    search_fields = _via("infusion__patient")


@admin.register(m.PatientRequest)
class PatientRequestAdmin(CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    list_display = ("visit", "kind", "received_at", "handled_at")
    list_filter = ("kind",)
    search_fields = _via("visit__infusion__patient")


@admin.register(m.Reminder)
class ReminderAdmin(CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    list_display = (
        "id",
        "visit",
        "audience",
        "purpose",
        "send_after",
        "status",
        "attempts",
        "last_smtp_code",
    )
    list_filter = ("status", "audience", "purpose")
    search_fields = _via("visit__infusion__patient")
    list_select_related = ("visit",)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.Delivery)
class DeliveryAdmin(CentreScopedAdmin):
    centre_path = "reminder__visit__infusion__patient__centre"
    list_display = ("reminder", "attempt", "at", "outcome", "smtp_code", "possible_duplicate")
    list_filter = ("outcome", "possible_duplicate")
    search_fields = _via("reminder__visit__infusion__patient")

    def has_change_permission(self, request, obj=None):
        return False


class ReportingStepInline(admin.TabularInline):
    model = m.ReportingStep
    fields = ("kind", "due_date", "completed_at", "completed_by", "reference")
    extra = 0


@admin.register(m.MalignancyEvent)
class MalignancyEventAdmin(CentreScopedAdmin):
    centre_path = "infusion__patient__centre"
    list_display = ("infusion", "malignancy_type", "diagnosis_date", "transgene_status", "confirmed")
    list_filter = ("malignancy_type", "transgene_status")
    search_fields = _via("infusion__patient")
    inlines = [ReportingStepInline]


@admin.register(m.ReportingStep)
class ReportingStepAdmin(CentreScopedAdmin):
    centre_path = "event__infusion__patient__centre"
    list_display = ("event", "kind", "due_date", "completed_at", "reference")
    list_filter = ("kind",)
    search_fields = _via("event__infusion__patient")


@admin.register(m.AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor", "actor_label", "action", "object_type", "object_id", "patient_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor__username")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
