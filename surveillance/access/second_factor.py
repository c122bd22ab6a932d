"""Staff sign-in with a second factor: a TOTP code from an authenticator app, on django-otp.

A staff member with a confirmed TOTP device gives the current code with the password, in the admin's sign-in form;
the session then remembers the device (django-otp's ``OTPMiddleware`` makes ``request.user.is_verified()`` true),
and the admin and the API's session authentication accept only such sessions for that user. With
``CARTWATCH_REQUIRE_2FA`` (on in production) staff without a device cannot sign in at all until an administrator
enrols them (``manage.py enroll_totp USERNAME``): a password alone is never enough there. API tokens are not
people and are untouched.

A signed-in user can also enrol themselves (the admin's "second factor" page): the new device stays unconfirmed,
and counts for nothing, until the user proves a code from it; then it replaces any earlier device and the user gets
single-use recovery codes (django-otp's static device), shown once, each of which signs in once in place of a code.

Where the factor is required, a new staff member enrols the first device without anyone at a shell: a right
password from a user with no confirmed device, whose account is younger than ``CARTWATCH_FIRST_ENROLMENT_DAYS``,
signs in to an enrolment-only session (the admin's enrolment page, language preference and sign-out; nothing else,
and never the API). Proving a code from the new device verifies the session with it. The age limit bounds what a
stolen password of a not-yet-enrolled user is worth: past it, only an administrator enrols the account.
"""

from __future__ import annotations

from base64 import b32encode
from datetime import timedelta

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

#: The name of the device ``enroll_totp`` creates (one per user: a re-enrolment replaces it).
DEVICE_NAME = "authenticator"
#: The static device holding a user's recovery codes, and how many a user gets at a time.
RECOVERY_DEVICE_NAME = "recovery codes"
RECOVERY_CODES = 10


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


def first_enrolment_open(user) -> bool:
    """Whether ``user`` may enrol a first device from a password-only session: the factor is required, the user is
    active staff without a confirmed device, and the account is younger than ``CARTWATCH_FIRST_ENROLMENT_DAYS``.

    Asked again on every request of such a session (kept on the user object, so once per request): an
    administrator's enrolment, or the account growing old, closes the session's way in.
    """
    if not (second_factor_required() and user.is_authenticated and user.is_active and user.is_staff):
        return False
    cached = getattr(user, "_cartwatch_first_enrolment", None)
    if cached is None:
        days = getattr(settings, "CARTWATCH_FIRST_ENROLMENT_DAYS", 7)
        young = timezone.now() - user.date_joined < timedelta(days=days)
        cached = young and totp_device_for(user) is None
        user._cartwatch_first_enrolment = cached
    return cached


def enrolment_only_session(user) -> bool:
    """A session without the factor whose user may enrol a first device: it reaches the enrolment page alone."""
    if not (second_factor_required() and user.is_authenticated):
        return False
    return not session_second_factor_ok(user) and first_enrolment_open(user)  # a verified session asks nothing


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


# --- self-service enrolment and recovery codes -------------------------------------------------------------------


def totp_pending_device(user) -> TOTPDevice:
    """The user's device waiting for confirmation, created on first ask.

    The same one is shown until it is confirmed, so reloading the page does not change the secret the user has
    just scanned. Unconfirmed, it counts for nothing: sign-in and ``user_needs_second_factor`` read confirmed
    devices only.
    """
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    return device or TOTPDevice.objects.create(user=user, name=DEVICE_NAME, confirmed=False)


def totp_qr_svg(device: TOTPDevice) -> str:
    """The device's ``otpauth://`` URI as a QR code, an SVG drawn here (no outside service sees the secret)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=20, border=2)
    return image.to_string(encoding="unicode")


class EnrolmentRefused(ValueError):
    """The code does not prove the pending device (wrong, replayed, throttled), or it was confirmed meanwhile."""


def totp_confirm(device: TOTPDevice, token: str) -> list[str]:
    """Confirm ``device`` with a code from it: it replaces the user's other TOTP devices, and the user gets new
    recovery codes, returned for showing once.

    A wrong code counts against the device's own throttle (committed, not rolled back with the refusal). The
    confirmation is a compare-and-set on ``confirmed``: of two racing confirmations, one wins.
    """
    with transaction.atomic():
        pending = TOTPDevice.objects.select_for_update().filter(pk=device.pk, confirmed=False).first()
        proved = pending is not None and pending.verify_is_allowed()[0] and pending.verify_token(token.strip())
        if proved:
            TOTPDevice.objects.filter(user_id=pending.user_id).exclude(pk=pending.pk).delete()
            if TOTPDevice.objects.filter(pk=pending.pk, confirmed=False).update(confirmed=True) != 1:
                raise EnrolmentRefused("the device was confirmed meanwhile")
            codes = recovery_codes_issue(pending.user)
    if not proved:
        raise EnrolmentRefused("the code does not match the new device")
    return codes


def recovery_codes_issue(user) -> list[str]:
    """New single-use recovery codes for ``user``, replacing any earlier ones; the caller shows them once."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def recovery_device_for(user) -> StaticDevice | None:
    """The user's recovery codes, if they have any left."""
    return StaticDevice.objects.filter(user=user, confirmed=True, token_set__isnull=False).order_by("-pk").first()


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def is_totp_code(token: str, device: TOTPDevice) -> bool:
    """A code from the authenticator app (its digits), rather than a recovery code (letters and digits)."""
    token = token.strip()
    return token.isdigit() and len(token) == device.digits
