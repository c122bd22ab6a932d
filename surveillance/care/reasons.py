"""The reasons the service writes itself on a visit or a patient, and how a reader sees them.

A status reason is data: the API returns it, the audit trail and the history keep it, and a coordinator's own
words go in the same column. So the service writes its reasons in English, whatever language the request that
caused them was served in, and the workspace shows them in the reader's language (``reason_shown``); words a
person typed are shown as typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.translation import get_language, gettext_noop
from django.utils.translation import gettext as _

from surveillance.seeds.labels import label

MISSED = gettext_noop("Window closed without a recorded visit")
WINDOW_CLOSED = gettext_noop("Window had closed when the visit was planned")
SUPERSEDED = gettext_noop("Superseded by a re-infusion")
DECEASED_PER_EHR = gettext_noop("Deceased per EHR import")
EHR_IMPORT = gettext_noop("EHR import")
LOST = gettext_noop("No visit attended after %(n)s consecutive missed visits")
REMOVED_BY_REPLAN = gettext_noop("Removed by re-plan")
PATIENT_CLOSED = gettext_noop("Patient %(status)s")

#: The reasons written word for word.
_FIXED = (MISSED, WINDOW_CLOSED, SUPERSEDED, DECEASED_PER_EHR, EHR_IMPORT, REMOVED_BY_REPLAN)
_PATIENT_STATUSES = ("active", "lost_to_follow_up", "deceased", "withdrawn", "transferred")


def lost_reason(missed: int) -> str:
    return LOST % {"n": missed}


def replan_removed_reason(why: str) -> str:
    return f"{REMOVED_BY_REPLAN}: {why}" if why else REMOVED_BY_REPLAN


def patient_closed_reason(status: str) -> str:
    """Why a closed patient's open visits were cancelled, in English (the status's catalogue label)."""
    return PATIENT_CLOSED % {"status": label(f"patient.{status}", "en").lower()}


def _patient_closed_shown(match: re.Match) -> str | None:
    for status in _PATIENT_STATUSES:
        if match[1] == label(f"patient.{status}", "en").lower():
            return _(PATIENT_CLOSED) % {"status": label(f"patient.{status}", get_language() or "en").lower()}
    return None


_PATTERNS: tuple[tuple[re.Pattern, Callable[[re.Match], str | None]], ...] = (
    (re.compile(r"No visit attended after (\d+) consecutive missed visits"), lambda m: _(LOST) % {"n": m[1]}),
    (
        re.compile(re.escape(REMOVED_BY_REPLAN) + r": (.+)", re.S),
        lambda m: f"{_(REMOVED_BY_REPLAN)}: {reason_shown(m[1])}",
    ),
    (re.compile(r"Patient (.+)"), _patient_closed_shown),
)


def reason_shown(text: str) -> str:
    """A stored reason in the active language when the service wrote it, else as it was typed."""
    if not text:
        return text
    if text in _FIXED:
        return _(text)
    for pattern, shown in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is not None:
            result = shown(match)
            if result is not None:
                return result
    return text
