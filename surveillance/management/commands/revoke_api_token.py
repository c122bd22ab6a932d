"""Revoke an API token by name or prefix: ``manage.py revoke_api_token NAME_OR_PREFIX``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from surveillance.api.auth import api_token_revoke
from surveillance.models import ApiToken


class Command(BaseCommand):
    help = "Revoke an API token (by name or prefix); it stops working at once."

    def add_arguments(self, parser):
        parser.add_argument("token", help="The token's name or prefix.")

    def handle(self, *args, token, **options):
        found = list(ApiToken.objects.filter(Q(name=token) | Q(prefix=token)))
        if len(found) != 1:
            raise CommandError(f"no single token named or prefixed {token!r}")
        if not api_token_revoke(found[0]):
            raise CommandError(f"token {found[0].name} was already revoked")
        self.stdout.write(f"revoked {found[0].name}")
