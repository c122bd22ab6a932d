"""API tokens in the admin: administrators issue a token (its key shown once), choose its centres and expiry, and
revoke it, without a shell. Issue and revoke go through ``api.auth`` like the management commands, which audits
them. No clinical role holds a token permission, so coordinators, physicians and auditors never see the page."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminDateWidget
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone

from surveillance.access.tenancy import scope, user_centre_ids
from surveillance.admin.worklists import workspace_today
from surveillance.api.auth import api_token_create, api_token_revoke, token_expiry
from surveillance.models import ApiToken, TreatmentCentre


class ApiTokenIssueForm(forms.ModelForm):
    """Name, centres, access and the last day the token works; the key itself is made by ``api_token_create``."""

    expires_on = forms.DateField(
        required=False,
        widget=AdminDateWidget,
        label="Works until",
        help_text="The last day the token works, in your centre's time zone. Leave empty for a token that works "
        "until it is revoked.",
    )

    class Meta:
        model = ApiToken
        fields = ["name", "centres", "read_only"]
        widgets = {"centres": forms.CheckboxSelectMultiple}
        help_texts = {"centres": "The token sees and writes these centres' data only."}

    def __init__(self, *args, centres: QuerySet, today: dt.date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["centres"].queryset = centres
        self.today = today

    def clean_expires_on(self) -> dt.date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < self.today:
            raise forms.ValidationError("Choose today or a later day.")
        return day

    def expires_at(self) -> dt.datetime | None:
        """The end of the chosen day in the current (the user's centre's) time zone."""
        day = self.cleaned_data.get("expires_on")
        return None if day is None else token_expiry(day, timezone.get_current_timezone())


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "centre_codes", "access", "state", "expires_at", "last_used_at", "created_at")
    list_filter = ("read_only",)
    search_fields = ("name", "prefix")
    fields = (
        "name",
        "prefix",
        "centre_codes",
        "access",
        "state",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    readonly_fields = fields
    actions = ["revoke"]

    def get_queryset(self, request):
        """The tokens whose every centre is one of the user's: an administrator of one centre neither sees nor
        revokes a token that also reaches another."""
        queryset = super().get_queryset(request).prefetch_related("centres")
        centre_ids = user_centre_ids(request.user)
        if centre_ids is None:
            return queryset
        elsewhere = ApiToken.centres.through.objects.exclude(treatmentcentre_id__in=centre_ids)
        return queryset.filter(centres__in=centre_ids).exclude(pk__in=elsewhere.values("apitoken_id")).distinct()

    def has_change_permission(self, request, obj=None):
        # A token is never edited: it is issued, and revoked (an action on the list). Its page only shows it.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # revoked tokens stay, for the audit trail's names

    @admin.display(description="Centres")
    def centre_codes(self, token: ApiToken) -> str:
        return ", ".join(sorted(c.code for c in token.centres.all()))

    @admin.display(description="Access")
    def access(self, token: ApiToken) -> str:
        return "read-only" if token.read_only else "read-write"

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        if token.is_revoked:
            return "revoked"
        return "expired" if token.is_expired(timezone.now()) else "live"

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset) -> None:
        revoked = sum(api_token_revoke(token, by=request.user) for token in queryset)
        self.message_user(request, f"{revoked} token(s) revoked; they stop working at once.", messages.SUCCESS)

    def add_view(self, request, form_url="", extra_context=None):
        """Issue a token: the form, then a page that shows the key this once (never stored)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        centres = scope(TreatmentCentre.objects.order_by("code"), request.user, "")
        form = ApiTokenIssueForm(
            request.POST if request.method == "POST" else None, centres=centres, today=workspace_today(request)
        )
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        if request.method == "POST" and form.is_valid():
            chosen = list(form.cleaned_data["centres"])
            token, key = api_token_create(
                form.cleaned_data["name"],
                chosen,
                read_only=form.cleaned_data["read_only"],
                expires_at=form.expires_at(),
                by=request.user,
            )
            context.update(title="Token issued", token=token, key=key, centres=sorted(c.code for c in chosen))
            # The admin marks every page no-store: the key is in no cache, only on this page.
            return TemplateResponse(request, "surveillance/admin/api_token_issued.html", context)
        context["title"] = "Issue an API token"
        return TemplateResponse(request, "surveillance/admin/api_token_issue.html", context)
