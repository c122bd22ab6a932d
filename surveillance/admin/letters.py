"""The worklist "Letters and calls to make": patients no message reaches, with the printable letter of each task
and the actions that record the letter sent or the call made (each a contact attempt)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.admin import worklists as wl
from surveillance.admin.base import CentreScopedAdmin
from surveillance.admin.display import date_text
from surveillance.care.contact_details import phone_display
from surveillance.models import LetterTask
from surveillance.models.patients import ContactMethod
from surveillance.reminders import letters


def _audit(request, action: str, task: LetterTask, changes: dict) -> None:
    audit_record(
        request,
        action,
        object_type="lettertask",
        object_id=task.pk,
        patient_id=task.visit.infusion.patient_id,
        changes=changes,
    )


@admin.register(LetterTask)
class LetterTaskAdmin(CentreScopedAdmin):
    centre_path = "visit__infusion__patient__centre"
    patient_path = "visit__infusion__patient"
    list_display = ("patient_col", "phone_col", "language_col", "purpose", "due_col", "created_at", "letter_col")
    list_filter = (wl.WorklistFilter, "purpose")
    list_select_related = ("visit__infusion__patient", "reminder")
    search_fields = tuple(
        f"visit__infusion__patient__{field}" for field in ("mrn", "family_name", "given_name", "email")
    )
    actions = ["letter_sent", "called_reached", "called_no_answer"]
    readonly_fields = ("visit", "reminder", "purpose", "sequence", "created_at", "done_at", "done_by")
    exclude = ("contact_attempt",)

    @admin.display(description=_("Patient"))
    def patient_col(self, obj):
        patient = obj.visit.infusion.patient
        url = reverse("admin:surveillance_patient_change", args=[patient.pk])
        return format_html(
            '<a href="{}">{}</a> <small class="cw-mrn">{}</small>', url, patient.display_name, patient.mrn
        )

    @admin.display(description=_("Phone"))
    def phone_col(self, obj):
        return phone_display(obj.visit.infusion.patient.phone) or gettext("no phone")

    @admin.display(description=_("Language"))
    def language_col(self, obj):
        return obj.visit.infusion.patient.get_preferred_language_display()

    @admin.display(description=_("Visit due"), ordering="visit__due_date")
    def due_col(self, obj):
        return date_text(obj.visit.due_date)

    @admin.display(description=_("Letter"))
    def letter_col(self, obj):
        url = reverse("admin:surveillance_lettertask_letter", args=[obj.pk])
        return format_html('<a href="{}" target="_blank">{}</a>', url, gettext("Print letter"))

    def get_urls(self):
        urls = [
            path(
                "<path:object_id>/letter/",
                self.admin_site.admin_view(self.letter_view),
                name="surveillance_lettertask_letter",
            )
        ]
        return urls + super().get_urls()

    def letter_view(self, request, object_id):
        task = self.get_object(request, object_id)
        if task is None or not self.has_view_permission(request, task):
            raise Http404("no such letter task")
        back = reverse("admin:surveillance_lettertask_changelist") + "?worklist=letters"
        html = letters.letter_render(task, wl.workspace_today(request), back)
        _audit(request, "view", task, {"page": "letter"})
        return HttpResponse(html)

    def _done(self, request, queryset, method: str, reached: bool) -> None:
        done = 0
        for task in queryset.filter(done_at__isnull=True).select_related("visit__infusion"):
            try:
                attempt = letters.letter_task_done(task, by=request.user, method=method, reached=reached)
            except letters.LetterTaskAlreadyDone:
                continue
            _audit(request, "letter_task_done", task, {"method": method, "reached": reached, "attempt": attempt.pk})
            done += 1
        message = ngettext(
            "%(count)d task done; it is a contact attempt.", "%(count)d tasks done; each is a contact attempt.", done
        )
        self.message_user(request, message % {"count": done}, messages.SUCCESS)

    @admin.action(description=_("Letter sent: mark done"), permissions=["change"])
    def letter_sent(self, request, queryset):
        self._done(request, queryset, ContactMethod.LETTER, reached=False)

    @admin.action(description=_("Called and reached: mark done"), permissions=["change"])
    def called_reached(self, request, queryset):
        self._done(request, queryset, ContactMethod.PHONE, reached=True)

    @admin.action(description=_("Called, no answer: mark done"), permissions=["change"])
    def called_no_answer(self, request, queryset):
        self._done(request, queryset, ContactMethod.PHONE, reached=False)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
