"""Issue an API token for an integration:
``manage.py create_api_token --centre CODE [--read-only] [--name NAME] [--expires-on YYYY-MM-DD]``.

Prints the key once (only its SHA-256 is stored).
"""

from __future__ import annotations

import datetime as dt
import secrets

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from surveillance.api.auth import api_token_create, token_expiry
from surveillance.models import ApiToken, TreatmentCentre


class Command(BaseCommand):
    help = "Create an API token scoped to one or more centres; prints the key once."

    def add_arguments(self, parser):
        parser.add_argument("--centre", action="append", required=True, help="Centre code (repeat for several).")
        parser.add_argument("--read-only", action="store_true", help="The token may only read.")
        parser.add_argument("--name", help="Who uses it (default: integration-<centre>-<random>).")
        parser.add_argument(
            "--expires-on",
            type=dt.date.fromisoformat,
            help="The last day the token works (YYYY-MM-DD, in the first centre's time zone); default: until revoked.",
        )

    def handle(self, *args, centre, read_only, name, expires_on, **options):
        codes = list(dict.fromkeys(centre))
        centres = list(TreatmentCentre.objects.filter(code__in=codes))
        missing = sorted(set(codes) - {c.code for c in centres})
        if missing:
            raise CommandError(f"no such centre: {', '.join(missing)}")
        name = name or f"integration-{'-'.join(codes)}-{secrets.token_hex(3)}"
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"a token named {name!r} exists already")
        expires_at = None
        if expires_on is not None:
            first = next(c for c in centres if c.code == codes[0])
            if expires_on < timezone.localdate(timezone.now(), first.tz):
                raise CommandError(f"--expires-on {expires_on} has passed in {first.code}'s time zone")
            expires_at = token_expiry(expires_on, first.tz)
        token, raw = api_token_create(name[:100], centres, read_only=read_only, expires_at=expires_at)
        self.stderr.write(
            f"token {token.name} (prefix {token.prefix}) for {', '.join(codes)}, "
            f"{'read-only' if read_only else 'read-write'}, "
            f"{f'until {expires_on} ({codes[0]})' if expires_on else 'until revoked'}; the key is shown once:"
        )
        self.stdout.write(raw)
