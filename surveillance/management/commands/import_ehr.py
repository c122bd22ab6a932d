"""Import an EHR export file: ``manage.py import_ehr FILE --centre CODE [--dry-run] [--source-system NAME]``.

FILE is a FHIR Bundle (``.json``), Bulk Data NDJSON (``.ndjson``, streamed in constant memory) or a clinic CSV
(``.csv``); ``-`` reads NDJSON from standard input. Prints the report as JSON; exits non-zero with a one-line reason
when the input is refused (nothing is saved then).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import TreatmentCentre


class Command(BaseCommand):
    help = "Import a FHIR Bundle, Bulk Data NDJSON or clinic CSV file into a centre."

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the export, or - for NDJSON on standard input.")
        parser.add_argument("--centre", required=True, help="Centre code.")
        parser.add_argument("--dry-run", action="store_true", help="Report what would happen; save nothing.")
        parser.add_argument("--source-system", default=ehr_import.DEFAULT_SOURCE_SYSTEM, help="The sending EHR.")
        parser.add_argument("--format", choices=["bundle", "ndjson", "csv"], help="Default: from the file name.")

    def handle(self, *args, file, centre, dry_run, source_system, format, **options):
        found = TreatmentCentre.objects.filter(code=centre).first()
        if found is None:
            raise CommandError(f"no such centre: {centre}")
        kind = format or self._kind(file)
        common = {"centre": found, "dry_run": dry_run, "source_system": source_system}
        try:
            if file == "-":
                report = ehr_import.ndjson_import(sys.stdin.buffer, **common)
            elif kind == "ndjson":
                with open(file, "rb") as handle:
                    report = ehr_import.ndjson_import(handle, **common)
            elif kind == "csv":
                report = ehr_import.csv_import(Path(file).read_bytes(), **common)
            else:
                report = ehr_import.bundle_import(Path(file).read_bytes(), **common)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
        except FhirImportError as exc:
            first = exc.issues[0] if exc.issues else None
            more = f" (and {len(exc.issues) - 1} more)" if len(exc.issues) > 1 else ""
            raise CommandError(f"refused, nothing saved: {first}{more}") from exc
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
        if report.error_count:
            raise CommandError(f"{report.error_count} line(s) refused; the others were imported")

    @staticmethod
    def _kind(file: str) -> str:
        suffix = Path(file).suffix.lower()
        return {".ndjson": "ndjson", ".csv": "csv"}.get(suffix, "bundle")
