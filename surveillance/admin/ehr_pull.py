"""EHR connections and their pulls, for administrators: no clinical role holds their permissions, so coordinators,
physicians and auditors see neither (Django's model permissions). The list shows each connection's current pull,
its progress, and the last failure; a pull's page shows its manifest's files and how far each was imported."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Prefetch
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.admin.base import CentreScopedAdmin, ReadOnlyAdmin
from surveillance.admin.display import NONE, moment_text
from surveillance.models import EhrConnection, EhrPullRun
from surveillance.models.ehr_pull import BULK_RESOURCE_TYPES


def _run_link(run: EhrPullRun) -> str:
    url = reverse("admin:surveillance_ehrpullrun_change", args=[run.pk])
    return format_html('<a href="{}">{}</a>', url, run.get_status_display())


def _prefetched(obj: EhrConnection, attr: str) -> EhrPullRun | None:
    """The run ``get_queryset`` fetched with the connection (none on the add page's unsaved connection)."""
    runs = getattr(obj, attr, None)
    return runs[0] if runs else None


@admin.register(EhrConnection)
class EhrConnectionAdmin(CentreScopedAdmin):
    list_display = ("name", "centre", "enabled", "current_pull", "since", "last_pulled_col", "last_failure")
    list_filter = ("enabled", ("centre", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "client_id")
    readonly_fields = ("last_pulled_at", "current_pull", "last_failure", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("centre", "name", "enabled")}),
        (_("FHIR server"), {"fields": ("fhir_base_url", "group_id", "resource_types")}),
        (
            _("SMART Backend Services"),
            {"fields": ("token_url", "client_id", "private_key_ref", "key_id", "algorithm", "scopes")},
        ),
        (
            _("Pulls"),
            {"fields": ("since", "last_pulled_at", "current_pull", "last_failure", "created_at", "updated_at")},
        ),
    )

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "resource_types":
            return forms.MultipleChoiceField(
                choices=[(name, name) for name in BULK_RESOURCE_TYPES],
                widget=forms.CheckboxSelectMultiple,
                help_text=_("The resource types asked for (_type). Patient is needed: the others are about patients."),
            )
        if isinstance(db_field, models.URLField):
            kwargs["assume_scheme"] = "https"  # the only scheme a remote EHR may be reached with
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("centre")
            .prefetch_related(
                Prefetch("runs", queryset=EhrPullRun.objects.order_by("-pk")[:1], to_attr="latest_runs"),
                Prefetch(
                    "runs",
                    queryset=EhrPullRun.objects.filter(failed_at__isnull=False).order_by("-failed_at")[:1],
                    to_attr="failed_runs",
                ),
            )
        )

    @admin.display(description=_("Current pull"))
    def current_pull(self, obj):
        run = _prefetched(obj, "latest_runs")
        if run is None:
            return gettext("never pulled")
        return format_html("{}: {}", _run_link(run), run.progress_text)

    @admin.display(description=_("Last pulled"), ordering="last_pulled_at")
    def last_pulled_col(self, obj):
        return moment_text(obj.last_pulled_at)

    @admin.display(description=_("Last failure"))
    def last_failure(self, obj):
        run = _prefetched(obj, "failed_runs")
        if run is None:
            return NONE
        return format_html("{}: {}", moment_text(run.failed_at), run.error)


@admin.register(EhrPullRun)
class EhrPullRunAdmin(ReadOnlyAdmin, CentreScopedAdmin):
    """What each pull did, read-only: a pull is the worker's to change."""

    centre_path = "connection__centre"
    list_display = ("pk", "connection", "status", "created_at", "attempts", "progress_text", "transaction_time")
    list_filter = ("status", ("connection", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("connection__centre",)
    fields = (
        "connection",
        "status",
        "since",
        "kickoff_url",
        "status_url",
        "server_progress",
        "next_poll_at",
        "transaction_time",
        "files_table",
        "report",
        "manifest",
        "attempts",
        "error",
        "failed_at",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields

    @admin.display(description=_("Files"))
    def files_table(self, obj):
        if not obj.files:
            return NONE
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (item["type"], item["lines_done"], gettext("imported") if item["done"] else gettext("to import"))
                for item in obj.files
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            gettext("Type"),
            gettext("Lines committed"),
            gettext("State"),
            rows,
        )
