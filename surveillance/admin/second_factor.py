"""The second factor, self-service: a signed-in staff user enrols an authenticator app (or replaces theirs) and
gets recovery codes, shown once.

The page is an admin page like any other: a user already enrolled reaches it only with a session verified by
their factor, so a stolen password alone cannot swap the device. It is also the one working page of a new user's
enrolment-only session (see ``surveillance.access.second_factor``), which the confirmation verifies.
"""

from __future__ import annotations

import django_otp
from django import forms
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from surveillance.access.audit import audit_record
from surveillance.access.second_factor import (
    EnrolmentRefused,
    enrolment_only_session,
    recovery_codes_left,
    totp_confirm,
    totp_device_for,
    totp_pending_device,
    totp_qr_svg,
    totp_secret_base32,
)


class ConfirmForm(forms.Form):
    otp_token = forms.CharField(
        label=_("Code from the app"),
        max_length=8,
        help_text=_("The six digits the app shows for CAR-T Watch, to prove it was set up."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )


def second_factor_view(site, request):
    """Status, then (for a new user, or with ``?replace=1``) the QR code of a pending device and the form that
    confirms it; a confirmation answers the recovery codes, never stored in a page anyone can come back to."""
    user = request.user
    first_enrolment = enrolment_only_session(user)  # before the confirmation verifies the session
    enrolled = totp_device_for(user)
    form = ConfirmForm(request.POST or None)
    show_enrolment = enrolled is None or request.method == "POST" or request.GET.get("replace") == "1"
    pending = totp_pending_device(user) if show_enrolment else None
    codes: list[str] = []
    if pending is not None and request.method == "POST" and form.is_valid():
        try:
            codes = totp_confirm(pending, form.cleaned_data["otp_token"])
        except EnrolmentRefused:
            form.add_error(
                "otp_token", _("That code does not match the new authenticator. Enter the code it shows now.")
            )
        else:
            pending.refresh_from_db()
            django_otp.login(request, pending)  # this session goes on, verified by the new device
            audit_record(
                request,
                "second_factor_enrolled",
                object_type="user",
                object_id=user.get_username(),
                changes={
                    "replaced": enrolled is not None,
                    "recovery_codes": len(codes),
                    "first_enrolment": first_enrolment,
                },
            )
    showing = pending if pending is not None and not codes else None
    context = {
        **site.each_context(request),
        "title": _("Second factor"),
        "enrolled": enrolled is not None or bool(codes),
        "codes": codes,
        "codes_left": recovery_codes_left(user),
        "form": form,
        "pending": showing,
        # an SVG drawn here from the device's own URI: no text from a request reaches it
        "qr": mark_safe(totp_qr_svg(showing)) if showing else "",
        "secret": totp_secret_base32(showing) if showing else "",
    }
    status = 400 if form.errors else 200
    # admin_view marks every admin page never_cache: the secret and the codes stay out of every cache
    return TemplateResponse(request, "surveillance/admin/second_factor.html", context, status=status)
