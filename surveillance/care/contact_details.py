"""A patient's phone number, as every entry point stores it: E.164 (``+12025550123``).

SMS providers take E.164 only, and one spelling per number lets an inbound STOP find its patient. Every write path
(the API, the admin form, EHR imports, identity reviews, the demo) calls ``phone_normalise``; a number that cannot
be a real one is refused with a field error rather than stored for an SMS that would fail.
"""

from __future__ import annotations

import phonenumbers
from django.utils import timezone

from surveillance.models import Patient

#: Numbers written without a country code are read as this country's when the centre sets none.
DEFAULT_REGION = "US"


class PhoneInvalid(ValueError):
    """The text is not a valid phone number; the message names no digits (it ends up in error pages and logs)."""


def phone_normalise(raw: str | None, region: str | None = None) -> str:
    """``raw`` as E.164, "" for a blank one; ``region`` (ISO 3166, e.g. the centre's country) reads a national
    number. Raises ``PhoneInvalid`` for text that is not a valid number."""
    text = (raw or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, (region or DEFAULT_REGION).upper())
    except phonenumbers.NumberParseException as exc:
        raise PhoneInvalid("not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise PhoneInvalid("not a valid phone number for its country (give it as +<country code><number>)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_display(e164: str) -> str:
    """The number as people dial it internationally (``+1 202-555-0123``): the worklists and the letter."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def patient_sms_consent_set(phone: str, consent: bool) -> list[int]:
    """Record an SMS STOP (``consent`` False) or START from ``phone`` (E.164) for every patient with that number;
    returns the ids of the patients it changed (rows locked, so a repeated keyword changes nothing twice).

    STOP ends SMS only: email reminders and the care team's escalations go on. Call inside a transaction.
    """
    changing = Patient.objects.select_for_update().filter(phone=phone).exclude(sms_consent=consent)
    ids = list(changing.values_list("pk", flat=True))
    Patient.objects.filter(pk__in=ids).update(sms_consent=consent, updated_at=timezone.now())
    return ids
