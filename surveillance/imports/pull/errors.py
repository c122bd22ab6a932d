"""Why a pull stopped. Messages are shown in the admin and kept on the run: they name the step, the file's type
and number and the EHR's answer (its HTTP status and issue code), never a URL's query string (pre-signed file URLs
carry credentials), a resource's content or an OperationOutcome's free text (which may quote one)."""

from __future__ import annotations


class PullError(Exception):
    """A pull attempt cannot go on; the run records why and the next pull resumes it."""


class ExportGone(PullError):
    """The EHR no longer knows the export (its status or a file answers 404 or 410, or it failed the export): the
    next pull asks for it again, with the same ``_since``."""
