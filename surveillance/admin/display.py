"""How the admin writes a date and a moment, for the places that build text in Python (list columns, messages,
chart labels); templates get the same through Django's formats (``surveillance.admin.formats``)."""

from __future__ import annotations

import datetime as dt

from django.utils import formats, timezone

NONE = "—"


def date_text(day: dt.date | None) -> str:
    """A date in the admin's one format (``DATE_FORMAT``: "3 Mar 2026")."""
    return formats.date_format(day) if day else NONE


def moment_text(moment: dt.datetime | None) -> str:
    """A moment in the active time zone (the user's centre's) with its abbreviation: "3 Mar 2026, 09:00 EST"."""
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else NONE
