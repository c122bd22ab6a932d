"""``manage.py load_seeds``: load the product catalogue and protocol versions from ``seeds/``."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from surveillance.seeds.loader import SeedError, seeds_load


class Command(BaseCommand):
    help = "Load the CAR-T product catalogue and surveillance protocols (idempotent; new versions only add)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", type=Path, default=settings.CARTWATCH["SEEDS_DIR"], help="Seeds folder.")

    def handle(self, *args, dir: Path, **options) -> None:
        try:
            report = seeds_load(dir)
        except SeedError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(report))
