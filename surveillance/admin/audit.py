"""The audit trail in the admin: readable by auditors (their centres' patients, and entries about no patient),
editable by no one."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Q

from surveillance import models as m
from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.admin.base import ReadOnlyAdmin


@admin.register(m.AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ("at", "actor", "actor_label", "action", "object_type", "object_id", "patient_id", "remote_addr")
    list_filter = ("action", "object_type")
    search_fields = ("=object_id", "=patient_id", "actor__username", "=remote_addr")
    list_select_related = ("actor",)
    date_hierarchy = "at"

    def get_queryset(self, request):
        entries = super().get_queryset(request)
        if user_centre_ids(request.user) is None:
            return entries
        patients = scope(m.Patient.objects.all(), request.user, "centre").values("pk")
        return entries.filter(Q(patient_id__in=patients) | Q(patient_id__isnull=True))

    def has_module_permission(self, request):
        return super().has_module_permission(request) and user_centre_ids(request.user) != []
