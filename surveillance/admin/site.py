"""The CAR-T Watch admin site: worklist counts on the index, the dashboard, protocol upgrades, throttled login."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.urls import path

from surveillance.audit import login_throttled, request_remote_addr


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """Refuses to check a password after too many recent failures for the username or from the address."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Wait a few minutes and try again.",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if login_throttled(username, request_remote_addr(self.request)):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        return super().clean()


class CartWatchAdminSite(admin.AdminSite):
    site_header = "CAR-T Watch"
    site_title = "CAR-T Watch"
    index_title = "Surveillance workspace"
    index_template = "surveillance/admin/index.html"
    login_form = ThrottledAuthenticationForm

    def get_urls(self):
        from surveillance.admin import dashboard, protocol_upgrade

        urls = [
            path("dashboard/", self.admin_view(lambda r: dashboard.dashboard_view(self, r)), name="dashboard"),
            path(
                "protocol-upgrade/",
                self.admin_view(lambda r: protocol_upgrade.protocol_upgrade_list_view(self, r)),
                name="protocol_upgrade_list",
            ),
            path(
                "protocol-upgrade/<int:protocol_id>/",
                self.admin_view(lambda r, protocol_id: protocol_upgrade.protocol_upgrade_view(self, r, protocol_id)),
                name="protocol_upgrade",
            ),
        ]
        return urls + super().get_urls()

    def index(self, request, extra_context=None):
        from surveillance.admin.worklists import worklist_counts

        extra_context = {
            **(extra_context or {}),
            "worklists": worklist_counts(request),
            "can_upgrade_protocols": request.user.has_perm("surveillance.view_protocol"),
        }
        return super().index(request, extra_context)
