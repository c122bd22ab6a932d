"""A file chosen in the workspace, imported by the same entry points as the API and ``import_ehr``.

What the upload page needs beyond them: which of the three formats a file is (by its name, then its first bytes),
and one call that runs the right entry point, for the dry-run preview and for the import itself.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

from django.utils.translation import gettext_lazy as _

from surveillance.imports import ehr_import
from surveillance.imports.report import ImportReport
from surveillance.models import ImportFormat

#: File name endings and the format they announce; a ``.json`` file may still be NDJSON (one resource a line).
SUFFIXES = {".csv": ImportFormat.CSV, ".ndjson": ImportFormat.NDJSON, ".jsonl": ImportFormat.NDJSON, ".json": None}


class UploadRefused(ValueError):
    """The file cannot be imported as it is (its kind, its content): the message, for the form, is its argument."""


def upload_format(filename: str, payload: bytes) -> str:
    """The import format of an uploaded file; ``UploadRefused`` for a file none of them reads."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix not in SUFFIXES:
        raise UploadRefused(_("Choose a CSV (.csv) or FHIR file (.json Bundle, .ndjson Bulk Data export)."))
    if not payload.strip():
        raise UploadRefused(_("The file is empty."))
    if b"\x00" in payload[:4096]:
        raise UploadRefused(_("This is not a text file: choose the CSV or FHIR export itself."))
    if suffix == ".json":
        return ImportFormat.BUNDLE if ehr_import.looks_like_bundle(payload[:65536]) else ImportFormat.NDJSON
    return SUFFIXES[suffix]


def upload_import(payload: bytes, format: str, centre, *, source_system: str, dry_run: bool) -> ImportReport:
    """Import (or, with ``dry_run``, preview) an uploaded file; ``FhirImportError`` when it is refused whole."""
    args = {"source_system": source_system, "dry_run": dry_run}
    if format == ImportFormat.CSV:
        return ehr_import.csv_import(payload, centre, **args)
    if format == ImportFormat.BUNDLE:
        return ehr_import.bundle_import(payload, centre, **args)
    lines = ehr_import.ndjson_lines(io.BytesIO(payload), ehr_import.import_max_bytes())
    return ehr_import.ndjson_import(lines, centre, **args)
