"""What a reminder says by SMS, how many segments that costs, and the transport that hands it to the backend.

Minimum necessary, stricter than email (an SMS shows on a locked screen): the centre, the date, the number to call
and a link; no name, no diagnosis, no product, no MRN. One segment where it can: the link is a short signed token
(``short_link_url``) to the same confirmation page the email links to, and the English text is GSM-7, so a
reminder fits 160 characters while the centre's name and the site address together stay under about 55. Spanish
accents need UCS-2, where a segment is 70 characters, so a Spanish reminder takes two or three (``sms_segments``
counts them as the network does).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import formats, translation
from django.utils.crypto import constant_time_compare, salted_hmac

from surveillance.models import FollowUpVisit, Reminder
from surveillance.models.reminders import Purpose
from surveillance.reminders import messages, sms_backends
from surveillance.reminders.transport import SendError, TransportError, Unsendable

SHORT_LINK_SALT = "surveillance.sms-link"
#: Characters of the signature kept in a short link: 72 bits, enough against guessing within a link's life.
SHORT_LINK_SIGNATURE = 12
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EPOCH = dt.date(2020, 1, 1)

#: GSM 03.38: the basic character set (one septet each) and its extension table (two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

TEXTS = {
    "en": {
        Purpose.UPCOMING: "{centre}: your follow-up visit is due {date}. To book, call {phone}. Confirm: {link}",
        Purpose.MOVED: "{centre}: your follow-up visit has moved to {date}. Questions: call {phone}. Confirm: {link}",
        Purpose.CANCELLED: "{centre}: your follow-up visit of {date} is cancelled. Questions: call {phone}.",
    },
    "es": {
        Purpose.UPCOMING: "{centre}: su próxima visita de seguimiento es el {date}. Para reservarla, llame al "
        "{phone}. Confirmar: {link}",
        Purpose.MOVED: "{centre}: su visita de seguimiento ha cambiado al {date}. Dudas: llame al {phone}. "
        "Confirmar: {link}",
        Purpose.CANCELLED: "{centre}: su visita de seguimiento del {date} se ha cancelado. Dudas: llame al {phone}.",
    },
}


def sms_segments(text: str) -> int:
    """How many segments the network bills for ``text``: GSM-7 160 alone or 153 each when concatenated (an
    extension character counts twice); otherwise UCS-2, 70 alone or 67 each (counted in UTF-16 units)."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        units, single, part = len(text) + sum(c in GSM7_EXTENSION for c in text), 160, 153
    else:
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


# --- the short signed link --------------------------------------------------------------------------------------
def _b62(n: int) -> str:
    digits = ""
    while True:
        n, rest = divmod(n, 62)
        digits = _ALPHABET[rest] + digits
        if not n:
            return digits


def _from_b62(text: str) -> int:
    value = 0
    for c in text:
        value = value * 62 + _ALPHABET.index(c)
    return value


def _signature(value: str) -> str:
    return salted_hmac(SHORT_LINK_SALT, value).hexdigest()[:SHORT_LINK_SIGNATURE]


def short_link_token(visit: FollowUpVisit, today: dt.date) -> str:
    """``<visit>.<day issued>.<signature>``: the visit's confirmation link in about 20 characters."""
    value = f"{_b62(visit.pk)}.{_b62((today - _EPOCH).days)}"
    return f"{value}.{_signature(value)}"


def short_link_read(token: str, today: dt.date) -> int:
    """The visit id of a short link; ``signing.BadSignature`` when forged, malformed or older than
    ``LINK_MAX_AGE_DAYS``."""
    try:
        visit, day, signature = token.split(".")
        if not constant_time_compare(signature, _signature(f"{visit}.{day}")):
            raise signing.BadSignature("forged link")
        issued = _EPOCH + dt.timedelta(days=_from_b62(day))
        pk = _from_b62(visit)
    except ValueError:
        raise signing.BadSignature("malformed link") from None
    if (today - issued).days > settings.CARTWATCH["LINK_MAX_AGE_DAYS"]:
        raise signing.SignatureExpired("link expired")
    return pk


def short_link_url(visit: FollowUpVisit, today: dt.date) -> str:
    before, after = _short_link_path(get_urlconf(), get_script_prefix())
    return messages.site_url(f"{before}{short_link_token(visit, today)}{after}")


@functools.lru_cache(maxsize=8)
def _short_link_path(urlconf: str | None, script_prefix: str) -> tuple[str, str]:
    """The short link's path before and after its token, reversed once: a reverse for each message cost as much as
    the rest of its text. (A token is letters, digits and dots, which a URL carries as they are.)"""
    before, after = reverse("surveillance:sms-link", urlconf=urlconf, args=["~"]).split("~")
    return before, after


# --- the text ---------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _short_date(day: dt.date, language: str) -> str:
    """The date as a patient reads it ("3 Mar 2027"); cached, since switching the active language for each message
    of a batch costs more than the rest of its text."""
    with translation.override(language):
        return formats.date_format(day, "j M Y")


def sms_text(reminder: Reminder, now: dt.datetime) -> str:
    """The reminder's SMS: centre, date, number to call, and the confirmation link (no link for a cancellation)."""
    visit = reminder.visit
    patient = visit.infusion.patient
    language = messages.patient_language(patient)
    centre = patient.centre
    purpose = Purpose(reminder.purpose)
    template = TEXTS[language].get(purpose)
    if template is None:
        raise Unsendable(f"no SMS text for {purpose.value}")
    link = "" if purpose == Purpose.CANCELLED else short_link_url(visit, now.astimezone(patient.tz).date())
    return template.format(
        centre=centre.name, date=_short_date(visit.due_date, language), phone=centre.phone or "-", link=link
    )


# --- the transport ----------------------------------------------------------------------------------------------
class SmsTransport:
    """The dispatcher's SMS channel: builds the text, hands it to the configured backend."""

    unreachable = "sms provider unreachable"
    lost = "sms provider connection lost"
    accepted_code = None

    def __init__(self) -> None:
        self.backend = sms_backends.get_sms_backend()
        self.timeout = settings.SMS_TIMEOUT
        #: The same for every message: resolved once per batch.
        self.status_callback = (
            messages.site_url(reverse("surveillance:twilio-status")) if self.backend.status_callbacks else ""
        )

    def open(self) -> None:
        self.backend.open()

    def build(self, reminder: Reminder, now: dt.datetime) -> Any:
        phone = reminder.visit.infusion.patient.phone
        if not phone.startswith("+"):
            raise Unsendable("invalid number: not E.164")
        return sms_backends.SmsMessage(to=phone, body=sms_text(reminder, now), status_callback=self.status_callback)

    def ready(self) -> bool:
        return True

    def send(self, reminder: Reminder, payload: sms_backends.SmsMessage, settle: Callable[[], None]) -> str:
        settle()
        try:
            return self.backend.send_message(payload)
        except sms_backends.SmsRefused as exc:
            raise TransportError(SendError(exc.status, str(exc), exc.temporary)) from None
        except OSError as exc:
            # no answer: the provider may have queued the message before the connection failed
            raise TransportError(SendError(None, type(exc).__name__, True, maybe_accepted=True)) from None

    def close(self) -> None:
        self.backend.close()
