"""Staff sign-in with a second factor: a TOTP code from an authenticator app, on django-otp.

A staff member with a confirmed TOTP device gives the current code with the password, in the admin's sign-in form;
the session then remembers the device (django-otp's ``OTPMiddleware`` makes ``request.user.is_verified()`` true),
and the admin and the API's session authentication accept only such sessions for that user. With
``CARTWATCH_REQUIRE_2FA`` (on in production) staff without a device cannot sign in at all until an administrator
enrols them (``manage.py enroll_totp USERNAME``): a password alone is never enough there. API tokens are not
people and are untouched.
"""

from __future__ import annotations

from base64 import b32encode

from django.conf import settings
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

#: The name of the device ``enroll_totp`` creates (one per user: a re-enrolment replaces it).
DEVICE_NAME = "authenticator"


def second_factor_required() -> bool:
    """Whether every staff sign-in needs a second factor (``CARTWATCH_REQUIRE_2FA``)."""
    return bool(getattr(settings, "CARTWATCH_REQUIRE_2FA", False))


def totp_device_for(user) -> TOTPDevice | None:
    """The user's confirmed TOTP device, if enrolled (the most recent one, should there be several)."""
    if getattr(user, "pk", None) is None:
        return None
    return TOTPDevice.objects.devices_for_user(user, confirmed=True).order_by("-pk").first()


def user_needs_second_factor(user) -> bool:
    """A signed-in staff session must be OTP-verified: always when required, else when the user is enrolled.

    The answer is kept on the user object, so one request asks the database at most once.
    """
    if second_factor_required():
        return True
    cached = getattr(user, "_cartwatch_enrolled", None)
    if cached is None:
        cached = TOTPDevice.objects.devices_for_user(user, confirmed=True).exists()
        user._cartwatch_enrolled = cached
    return cached


def session_second_factor_ok(user) -> bool:
    """A session user may go on: verified by a device this session, or not asked for one."""
    is_verified = getattr(user, "is_verified", None)  # installed by django-otp's middleware
    if is_verified is not None and is_verified():
        return True
    return not user_needs_second_factor(user)


def totp_secret_base32(device: TOTPDevice) -> str:
    """The secret as authenticator apps type it in by hand (base32, no padding)."""
    return b32encode(device.bin_key).decode("ascii").rstrip("=")


class AlreadyEnrolled(ValueError):
    """The user has a device already: replacing it is a deliberate act (``--reset``)."""


def totp_enroll(user, *, reset: bool = False) -> TOTPDevice:
    """Give the user a new confirmed TOTP device, whose secret the caller shows once.

    An enrolled user keeps the device unless ``reset`` (a lost phone): then every TOTP device of the user is
    replaced by a fresh secret, and sessions verified by the old one stop being verified.
    """
    with transaction.atomic():
        if totp_device_for(user) is not None and not reset:
            raise AlreadyEnrolled(f"{user.get_username()} already has a device (--reset replaces it)")
        TOTPDevice.objects.filter(user=user).delete()
        return TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=True)
