"""``manage.py ensure_demo_users``: the demo logins for `make run` (idempotent)."""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from surveillance.access.roles import roles_sync
from surveillance.models import CentreMembership, Role, TreatmentCentre

DEMO_USERS = (
    ("coordinator-a", Role.COORDINATOR, ("centre-a",)),
    ("physician-a", Role.PHYSICIAN, ("centre-a",)),
    ("physician-b", Role.PHYSICIAN, ("centre-b",)),
    ("auditor", Role.AUDITOR, ("centre-a", "centre-b")),
)


#: The demo's administrator (a superuser): API tokens, webhooks, EHR connections and the development mailbox.
DEMO_ADMINISTRATOR = "administrator"


def demo_password() -> str:
    return os.environ.get("CARTWATCH_DEMO_PASSWORD", "cartwatch-demo")


class Command(BaseCommand):
    help = "Create the demo staff logins (coordinator, physicians, auditor, administrator) for the demo centres."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--print-password", action="store_true", help="Only print the demo password.")

    def handle(self, *args, print_password: bool, **options) -> None:
        if print_password:
            self.stdout.write(demo_password())
            return
        groups = roles_sync()
        centres = {c.code: c for c in TreatmentCentre.objects.filter(code__in={"centre-a", "centre-b"})}
        if len(centres) < 2:
            raise CommandError("the demo centres do not exist: run seed_demo first")
        User = get_user_model()
        for username, role, codes in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
            if created:
                user.set_password(demo_password())
                user.save()
            user.groups.add(groups[role])
            for code in codes:
                CentreMembership.objects.get_or_create(user=user, centre=centres[code], defaults={"role": role})
        administrator, created = User.objects.get_or_create(
            username=DEMO_ADMINISTRATOR, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            administrator.set_password(demo_password())
            administrator.save()
        names = [*(u for u, _, _ in DEMO_USERS), DEMO_ADMINISTRATOR]
        self.stdout.write(f"demo users ready: {', '.join(names)}")
