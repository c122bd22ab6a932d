"""``manage.py seed_demo --patients N``: a realistic, deterministic demo cohort (a re-run changes nothing)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from surveillance.seeds.demo import demo_cohort_create, demo_settings


class Command(BaseCommand):
    help = "Create a demo cohort of fictional patients with infusions, history and second cancers."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--patients", type=int, default=300)
        parser.add_argument("--settings-file", type=Path, default=settings.CARTWATCH["SEEDS_DIR"] / "demo.yaml")

    def handle(self, *args, patients: int, settings_file: Path, **options) -> None:
        if patients < 0:
            raise CommandError("--patients must be zero or more")
        try:
            report = demo_cohort_create(patients, demo_settings(settings_file))
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot create the demo cohort: {exc}") from exc
        self.stdout.write(str(report))
