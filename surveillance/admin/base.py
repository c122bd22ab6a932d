"""A ModelAdmin base that shows staff only their centres' rows, everywhere the admin lists or looks up."""

from __future__ import annotations

from django.contrib import admin

from surveillance.models import Patient, TreatmentCentre
from surveillance.tenancy import scope, user_centre_ids


class CentreScopedAdmin(admin.ModelAdmin):
    """``centre_path`` is the lookup from the model to its TreatmentCentre ("" for the centre itself)."""

    centre_path: str = "centre"
    list_per_page = 50

    def get_queryset(self, request):
        return scope(super().get_queryset(request), request.user, self.centre_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Choices in forms and autocompletes must not reveal another centre's patients.
        if db_field.related_model is Patient:
            kwargs["queryset"] = scope(Patient.objects.all(), request.user, "centre")
        elif db_field.related_model is TreatmentCentre:
            kwargs["queryset"] = scope(TreatmentCentre.objects.all(), request.user, "")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_module_permission(self, request):
        return super().has_module_permission(request) and user_centre_ids(request.user) != []
