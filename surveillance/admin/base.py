"""A ModelAdmin base that shows staff only their centres' rows, everywhere the admin lists or looks up, and
records in the audit trail every page of patient data it shows and every change made through it."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.widgets import AdminSplitDateTime
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from surveillance.access.audit import audit_patients_viewed, audit_record
from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.admin.worklists import BoundedPaginator, current_worklist
from surveillance.models import Patient, TreatmentCentre


def patient_id_of(obj, patient_path: str) -> int | None:
    """Follow ``patient_path`` (e.g. ``infusion__patient``) from ``obj`` to the patient's id."""
    if patient_path == "":
        return obj.pk
    *hops, last = patient_path.split("__")
    for hop in hops:
        obj = getattr(obj, hop, None)
        if obj is None:
            return None
    return getattr(obj, f"{last}_id", None)


class ReadOnlyAdmin:
    """Pages to read only: rows the service writes itself (the audit trail, reporting steps closed from their own
    form, EHR pulls) are never added, changed or deleted through the admin's forms."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CentreScopedAdmin(admin.ModelAdmin):
    """``centre_path`` is the lookup from the model to its TreatmentCentre ("" for the centre itself);
    ``patient_path`` the lookup to its Patient ("" for the patient itself, ``None`` when it has none)."""

    centre_path: str = "centre"
    patient_path: str | None = None
    list_per_page = 50
    # A list page counts the rows it shows (its filter) up to a cap ("1000+", as the home page's tiles do), and never
    # the whole table beside it: either count grows with the cohort. At 100,000 patients the exact count of the
    # window-open visits was over half of that list's time, the whole-table count most of it at 10,000.
    show_full_result_count = False
    paginator = BoundedPaginator
    change_list_template = "surveillance/admin/change_list.html"

    def get_queryset(self, request):
        return scope(super().get_queryset(request), request.user, self.centre_path)

    def action_checkbox(self, obj):
        """The row's selection box, written as Django's ``CheckboxInput`` renders it: rendered through the form
        renderer's templates, the box of each of a page's 50 rows cost more than the rest of the list."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # Choices in forms and autocompletes must not reveal another centre's rows.
        related = self.admin_site._registry.get(db_field.related_model)
        if isinstance(related, CentreScopedAdmin):
            kwargs["queryset"] = related.get_queryset(request)
        elif db_field.related_model is Patient:
            kwargs["queryset"] = scope(Patient.objects.all(), request.user, "centre")
        elif db_field.related_model is TreatmentCentre:
            kwargs["queryset"] = scope(TreatmentCentre.objects.all(), request.user, "")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # A date-and-time field is two inputs under one label that points at neither: each gets its own name,
        # so that a screen reader says "Opted out at, date" rather than nothing.
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and isinstance(field.widget, AdminSplitDateTime):
            date_input, time_input = field.widget.widgets
            date_input.attrs["aria-label"] = f"{field.label}, date"
            time_input.attrs["aria-label"] = f"{field.label}, time"
        return field

    def has_module_permission(self, request):
        return super().has_module_permission(request) and user_centre_ids(request.user) != []

    # --- lists: titled by their worklist; every page of patients shown is audited ---------------------------------
    def get_ordering(self, request):
        worklist = current_worklist(request)
        if worklist is not None and worklist.model is self.model and worklist.ordering:
            return worklist.ordering
        return super().get_ordering(request)

    def changelist_view(self, request, extra_context=None):
        # A worklist is titled by its name and says what it is for, rather than "Select ... to change". The
        # template always finds ``worklist`` (None on a plain list): a missing variable is logged with the request.
        worklist = current_worklist(request)
        extra_context = {**(extra_context or {}), "worklist": None}
        if worklist is not None and worklist.model is self.model:
            extra_context.update(title=worklist.label, worklist=worklist)
        response = super().changelist_view(request, extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None and getattr(cl.paginator, "more", False):  # "All 1000+ selected", not "All 1001"
            response.context_data["selection_note_all"] = ngettext(
                "%(total_count)s selected", "All %(total_count)s selected", cl.result_count
            ) % {"total_count": cl.paginator.shown_count}
        if self.patient_path is not None and request.method == "GET" and cl is not None:
            self.audit_list(request, [obj.pk for obj in cl.result_list])
        return response

    def audit_list(self, request, pks) -> None:
        if not pks:
            return
        column = "pk" if self.patient_path == "" else f"{self.patient_path}_id"
        ids = self.model._default_manager.filter(pk__in=pks).values_list(column, flat=True)
        audit_patients_viewed(request, self.model._meta.model_name, ids)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if (
            self.patient_path is not None
            and request.method == "GET"
            and IS_POPUP_VAR not in request.GET
            and getattr(response, "status_code", 200) == 200
        ):
            obj = getattr(response, "context_data", {}).get("original") if hasattr(response, "context_data") else None
            if obj is not None:
                audit_record(
                    request,
                    "view",
                    object_type=self.model._meta.model_name,
                    object_id=obj.pk,
                    patient_id=patient_id_of(obj, self.patient_path),
                )
        return response

    def construct_change_message(self, request, form, formsets, add=False):
        request._audit_fields = list(form.changed_data) if form is not None else []
        return super().construct_change_message(request, form, formsets, add)

    def log_addition(self, request, obj, message):
        self._audit_change(request, obj, "add", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._audit_change(request, obj, "change", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit_change(request, obj, "delete", [])
        return super().log_deletions(request, queryset)

    def _audit_change(self, request, obj, action: str, message) -> None:
        fields = getattr(request, "_audit_fields", None)
        if fields is None:
            fields = [name for entry in message or [] for name in _changed_fields(entry)]
        fields = sorted(set(fields))
        audit_record(
            request,
            action,
            object_type=self.model._meta.model_name,
            object_id=obj.pk,
            patient_id=patient_id_of(obj, self.patient_path) if self.patient_path is not None else None,
            changes={"fields": fields},
        )


def _changed_fields(entry) -> list[str]:
    if isinstance(entry, dict):
        for value in entry.values():
            if isinstance(value, dict):
                return [str(f) for f in value.get("fields", [])] + ([str(value["name"])] if "name" in value else [])
    return []
