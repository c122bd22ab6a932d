"""The CAR-T Watch admin site: worklist counts on the index, the dashboard, protocol upgrades, throttled login with
a second factor (a TOTP code for enrolled staff; for all staff when ``CARTWATCH_REQUIRE_2FA``, a new one enrolling
a first device in an enrolment-only session). Every page shows times in the user's centre's zone, and a refusal or
a missing page is an admin page with a way back."""

from __future__ import annotations

from functools import update_wrapper

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django_otp.forms import OTPAuthenticationFormMixin

from surveillance.access.audit import audit_write, login_throttled, request_remote_addr
from surveillance.access.roles import ROLE_PERMISSIONS
from surveillance.access.second_factor import (
    enrolment_only_session,
    first_enrolment_open,
    is_totp_code,
    recovery_device_for,
    second_factor_required,
    session_second_factor_ok,
    totp_device_for,
)

#: What the clinical roles may do ("app_label.codename"): a permission beyond these makes a user an administrator.
ROLE_GRANTS = frozenset(f"surveillance.{codename}" for codenames in ROLE_PERMISSIONS.values() for codename in codenames)


def user_administers(user) -> bool:
    """Superusers, and staff granted a permission no clinical role has (managing centres, products, accounts).

    They see the raw model lists on the home page; coordinators, physicians and auditors work from the worklists.
    """
    return user.is_superuser or bool(user.get_all_permissions() - ROLE_GRANTS)


#: The admin pages an enrolment-only session reaches (by URL name): enrolling, the language to read it in, leaving.
ENROLMENT_PAGES = frozenset({"second_factor", "preferences", "logout", "jsi18n"})

DEAD_ENDS = {
    403: (_("You cannot do this here"), _("Your role does not allow this action or page. Nothing was changed.")),
    404: (_("Page not found"), _("There is nothing at this address, or it is not in your centres.")),
}


class ThrottledAuthenticationForm(AdminAuthenticationForm):
    """Refuses to check a password after too many recent failures for the username or from the address."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": _("Too many failed sign-in attempts. Wait a few minutes and try again."),
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        if login_throttled(username, request_remote_addr(self.request)):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        return super().clean()


class SecondFactorAuthenticationForm(OTPAuthenticationFormMixin, ThrottledAuthenticationForm):
    """Password, then the authenticator code of an enrolled user (django-otp's ``OTPAuthenticationForm`` pattern).

    The code is one field on the same page: the device is the user's own TOTP device, chosen here rather than
    picked from a list, or, for anything that is not the app's digits, the user's recovery codes (each signs in
    once; its use is audited). A wrong code is a failed sign-in like a wrong password (an audit row the throttle
    counts), so guessing codes is throttled as guessing passwords is. Every other message comes only after the
    password was right, so it tells nothing to someone who does not know it.
    """

    otp_token = forms.CharField(
        required=False,
        label=_("Authentication code"),
        help_text=_("The six digits your authenticator app shows, if you are enrolled, or one of your recovery codes."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    otp_error_messages = {
        **OTPAuthenticationFormMixin.otp_error_messages,
        "token_required": _("Enter the authentication code from your authenticator app."),
        "invalid_token": _("That authentication code is not valid. Enter the code your app shows now."),
    }
    error_messages = {
        **ThrottledAuthenticationForm.error_messages,
        "enrolment_required": _(
            "Sign-in needs a second factor and you have no authenticator enrolled yet. "
            "Ask an administrator to enrol you."
        ),
    }

    def clean(self):
        cleaned = super().clean()  # the throttle, the password, an active staff account
        user = self.get_user()
        device = totp_device_for(user)
        if device is None:
            if first_enrolment_open(user):
                # a new account: signed in to enrol its first device, and to nothing else until a code proves it
                self._audit_sign_in(user, "first_enrolment_started")
            elif second_factor_required():
                raise forms.ValidationError(self.error_messages["enrolment_required"], code="enrolment_required")
            return cleaned
        token = cleaned.get("otp_token") or ""
        recovery = None if not token or is_totp_code(token, device) else recovery_device_for(user)
        self._device = recovery or device
        try:
            self.clean_otp(user)
        except forms.ValidationError:
            if token:
                user_login_failed.send(
                    sender=__name__, credentials={"username": user.get_username()}, request=self.request
                )
            raise
        if recovery is not None:
            self._audit_sign_in(user, "recovery_code_used")
        return cleaned

    def _audit_sign_in(self, user, action: str) -> None:
        audit_write(
            action,
            object_type="user",
            object_id=user.get_username(),
            by=user,
            remote_addr=request_remote_addr(self.request),
        )

    _device = None

    def _chosen_device(self, user):
        return self._device

    def _update_form(self, user) -> None:
        # django-otp re-renders the password into the page for a second step; here the code comes with it.
        return None


class CartWatchAdminSite(admin.AdminSite):
    site_header = "CAR-T Watch"
    site_title = "CAR-T Watch"
    index_title = _("Surveillance workspace")
    index_template = "surveillance/admin/index.html"
    login_form = SecondFactorAuthenticationForm
    login_template = "surveillance/admin/login.html"

    def has_permission(self, request) -> bool:
        """Staff, and, when a second factor is needed, a session that gave one (django-otp's ``OTPAdminSite``).

        A session that signed in before its user was enrolled, or before the requirement was switched on, is sent
        back to the sign-in page. An enrolment-only session passes here, and ``admin_view`` keeps it to
        ``ENROLMENT_PAGES``.
        """
        return super().has_permission(request) and (
            session_second_factor_ok(request.user) or enrolment_only_session(request.user)
        )

    def each_context(self, request):
        context = super().each_context(request)
        if enrolment_only_session(request.user):
            context["available_apps"] = []  # no links to pages the session cannot open
        return context

    def admin_view(self, view, cacheable=False):
        """Every admin page: permission checked (Django's), then rendered in the user's centre's time zone, with a
        refusal or a missing object answered by a page of the admin rather than a bare error."""

        def in_workspace(request, *args, **kwargs):
            from surveillance.admin.worklists import workspace_zone

            with timezone.override(workspace_zone(request)):
                try:
                    response = view(request, *args, **kwargs)
                except PermissionDenied:
                    response = self.dead_end(request, 403)
                except Http404:
                    response = self.dead_end(request, 404)
                if isinstance(response, SimpleTemplateResponse):
                    response.render()  # while the zone is active: rendering converts the times
            return response

        checked = super().admin_view(update_wrapper(in_workspace, view), cacheable)

        def enrolment_gate(request, *args, **kwargs):
            """An enrolment-only session is sent to the enrolment page from every other page (a write is refused)."""
            match = request.resolver_match
            page = match.url_name if match is not None and match.namespace == self.name else None
            if page not in ENROLMENT_PAGES and enrolment_only_session(request.user):
                if request.method in ("GET", "HEAD"):
                    return HttpResponseRedirect(reverse("admin:second_factor", current_app=self.name))
                return self.dead_end(request, 403)
            return checked(request, *args, **kwargs)

        return update_wrapper(enrolment_gate, view)

    def dead_end(self, request, status: int) -> TemplateResponse:
        """The 403 and 404 pages: what happened, in the admin's look, with the way back (the page the user came
        from when it is on this site) and home. The exception's text is not shown: it may name what was asked."""
        title, explanation = DEAD_ENDS[status]
        back = request.META.get("HTTP_REFERER", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
            back = ""
        return TemplateResponse(
            request,
            "surveillance/admin/dead_end.html",
            {
                **self.each_context(request),
                "title": title,
                "explanation": explanation,
                "back": back,
                "home": reverse("admin:index", current_app=self.name),
            },
            status=status,
        )

    def get_urls(self):
        from surveillance.admin import dashboard, dev_mailbox, imports, preferences, protocol_upgrade, second_factor

        urls = [
            path("mailbox/", self.admin_view(lambda r: dev_mailbox.dev_mailbox_view(self, r)), name="dev_mailbox"),
            path("import/", self.admin_view(lambda r: imports.upload_view(self, r)), name="import_upload"),
            path(
                "import/jobs/<int:job_id>/",
                self.admin_view(lambda r, job_id: imports.import_job_view(self, r, job_id)),
                name="import_job",
            ),
            path(
                "second-factor/",
                self.admin_view(lambda r: second_factor.second_factor_view(self, r)),
                name="second_factor",
            ),
            path(
                "preferences/",
                self.admin_view(lambda r: preferences.preferences_view(self, r)),
                name="preferences",
            ),
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
        from surveillance.admin.dev_mailbox import mailbox_enabled
        from surveillance.admin.worklists import worklist_counts, workspace_today

        extra_context = {
            **(extra_context or {}),
            "today": workspace_today(request),
            "worklists": worklist_counts(request),
            "can_upgrade_protocols": request.user.has_perm("surveillance.view_protocol"),
            "can_find_patients": request.user.has_perm("surveillance.view_patient"),
            "can_import": request.user.has_perm("surveillance.change_patient"),
            "administers": user_administers(request.user),
            "dev_mailbox": request.user.is_superuser and mailbox_enabled(),
        }
        return super().index(request, extra_context)
