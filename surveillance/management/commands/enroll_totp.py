"""Enrol a staff member in the second factor: ``manage.py enroll_totp USERNAME [--reset]``.

Creates a confirmed TOTP device and prints its ``otpauth://`` URI (to turn into a QR code for the authenticator
app) and the base32 secret (to type in by hand), once: they are not shown again. ``--reset`` replaces the device of
someone who lost it; without it an enrolled user is refused, so a typo cannot silently lock a colleague out.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from surveillance.access.second_factor import AlreadyEnrolled, totp_enroll, totp_secret_base32


class Command(BaseCommand):
    help = "Give a staff user a TOTP authenticator device; prints the otpauth:// URI and the secret once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--reset", action="store_true", help="Replace the user's existing device.")

    def handle(self, *args, username: str, reset: bool, **options) -> None:
        User = get_user_model()
        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"no such user: {username}")
        try:
            device = totp_enroll(user, reset=reset)
        except AlreadyEnrolled as exc:
            raise CommandError(str(exc)) from exc
        if not user.is_staff:
            self.stderr.write(f"note: {username} is not staff; the device only matters once they are")
        self.stderr.write(f"{username} is enrolled; add this to the authenticator app now, it is shown once:")
        self.stdout.write(device.config_url)
        self.stdout.write(f"secret: {totp_secret_base32(device)}")
