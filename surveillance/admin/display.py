"""How the admin writes a date, a moment and a patient, for the places that build text in Python (list columns,
messages, chart labels); templates get the same through Django's formats (``surveillance.admin.formats``)."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html

NONE = "—"


def date_text(day: dt.date | None) -> str:
    """A date in the admin's one format (``DATE_FORMAT``: "3 Mar 2026")."""
    return formats.date_format(day) if day else NONE


def moment_text(moment: dt.datetime | None) -> str:
    """A moment in the active time zone (the user's centre's) with its abbreviation: "3 Mar 2026, 09:00 EST"."""
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else NONE


def patient_cell(patient) -> str:
    """The patient's name linking to the patient page, the MRN beside it (a list column that leads to the patient).

    A list using it must link its rows through another column (``list_display_links``): Django wraps the first
    column in a link of its own, and a link inside a link leaves the outer one empty for screen readers.
    """
    url = reverse("admin:surveillance_patient_change", args=[patient.pk])
    return format_html('<a href="{}">{}</a> <small class="cw-mrn">{}</small>', url, patient.display_name, patient.mrn)
