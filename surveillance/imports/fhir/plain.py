"""FHIR resources in a plain shape, read without full validation to the values full validation gives.

Full validation by the fhir.resources (pydantic) models costs about half a millisecond a resource, more than
everything else an import does with a Patient, an infusion or a blood count. Most resources of an export are plainly
shaped: a handful of known elements, each value of the expected JSON type. A resource in exactly such a shape is read
here into a ``Plain`` object that answers the same attributes as its validated model (an absent element: None) with
the same values, so the readers of ``parse`` and ``clinical`` cannot tell the two apart. Every value must be in a
stricter form than FHIR's own (printable text without leading or trailing spaces, codes and URIs of printable ASCII,
dates and instants that also parse as Python dates, booleans and integers of their JSON type), so that nothing read
here is a resource full validation would refuse. Anything else, a single unknown element or a value in a form this
module is not sure of, is not read (None) and goes through full validation, which accepts or refuses it as it always
has.

A shape is declared as the reader of each element it may have (``element``); ``PLAIN_READERS`` are the resources
``parse`` reads this way, ``clinical.plain_observation`` a laboratory result.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

Reader = Callable[[Any], Any]


class Plain:
    """A plainly-shaped element's fields as attributes (absent: None), as its validated model gives them."""

    def __init__(self, fields: dict[str, Any]):
        self.__dict__.update(fields)

    def __getattr__(self, name: str) -> None:  # only asked for the fields the element does not have
        return None


class NotPlain(Exception):
    """The element is not in the plain shape: full validation decides."""


#: Stricter than FHIR's own forms: printable ASCII only, no leading, trailing or double spaces.
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
WORDS = re.compile(r"[!-~]+(?: [!-~]+)*")  # a code, a display, a unit
URI = re.compile(r"[!-~]+")
REFERENCE = re.compile(r"[A-Za-z]{1,64}/[A-Za-z0-9\-.]{1,64}|urn:uuid:[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")
#: Only the offsets FHIR allows (-14:00 .. +14:00), and no leap second (the models keep one as a string).
INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # a full date: the models keep a partial one as a string
DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
MAX_INTEGER = 2**31 - 1  # FHIR's integer and positiveInt


# --------------------------------------------------------------------------------------------- values
def matching(value: Any, form: re.Pattern) -> str:
    if type(value) is not str or not form.fullmatch(value):
        raise NotPlain
    return value


def fhir_id(value: Any) -> str:
    return matching(value, ID)


def code(value: Any) -> str:
    return matching(value, WORDS)


def uri(value: Any) -> str:
    return matching(value, URI)


def text(value: Any) -> str:
    """A FHIR string: printable text in any script, without leading or trailing spaces."""
    if type(value) is not str or not value or not value.isprintable() or value.strip() != value:
        raise NotPlain
    return value


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise NotPlain
    return value


def positive_int(value: Any) -> int:
    if type(value) is not int or not 1 <= value <= MAX_INTEGER:
        raise NotPlain
    return value


def decimal(value: Any) -> int | float:
    if type(value) not in (int, float) or not -1e15 < value < 1e15 or not DECIMAL.fullmatch(str(value)):
        raise NotPlain  # a bool, a string, or a number too large to be sure of its float
    return value


def instant(value: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(matching(value, INSTANT))
    except ValueError:
        raise NotPlain from None


def date(value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(matching(value, DATE))
    except ValueError:
        raise NotPlain from None


def date_time(value: Any) -> dt.date | dt.datetime:
    """A FHIR dateTime that is a full date (a date, as the models give it) or an instant (an aware datetime)."""
    return date(value) if type(value) is str and len(value) == 10 else instant(value)


# --------------------------------------------------------------------------------------------- shapes
def fields(element: Any, allowed: Mapping[str, Any]) -> dict[str, Any]:
    """The element's fields, if it is a non-empty JSON object whose every field is ``allowed``."""
    if type(element) is not dict or not element or not element.keys() <= allowed.keys():
        raise NotPlain
    return element


def items(value: Any) -> list:
    if type(value) is not list or not value:
        raise NotPlain
    return value


def many(read: Reader) -> Reader:
    """A reader of a non-empty array of what ``read`` reads."""
    return lambda value: [read(item) for item in items(value)]


def element(readers: Mapping[str, Reader], required: tuple[str, ...] = ()) -> Callable[[Any], Plain]:
    """A reader of an element (a JSON object) that may have these elements, read each by its reader, and must have
    the ``required`` ones."""

    def read(value: Any) -> Plain:
        given = fields(value, readers)
        if any(name not in given for name in required):
            raise NotPlain
        return Plain({name: readers[name](item) for name, item in given.items()})

    return read


def resource(resource_type: str, readers: Mapping[str, Reader], required: tuple[str, ...] = ()):
    """A reader of a resource of this type in the plain shape; None when it is not in it."""
    shape = element({"resourceType": code, "id": fhir_id, "meta": _meta, **readers}, required)

    def read(given: Mapping[str, Any]) -> Plain | None:
        if given.get("resourceType") != resource_type:
            return None
        try:
            return shape(given)
        except NotPlain:
            return None

    return read


coding = element({"system": uri, "code": code, "display": code}, ("system", "code"))
concept = element({"coding": many(coding)})
quantity = element({"value": decimal, "unit": code, "system": uri, "code": code}, ("value",))
reference = element({"reference": lambda value: matching(value, REFERENCE)})
_meta = element({"versionId": fhir_id, "lastUpdated": instant, "source": uri, "profile": many(uri)})


# --------------------------------------------------------------------------------------------- resources
_patient = resource(
    "Patient",
    {
        "identifier": many(element({"use": code, "type": concept, "system": uri, "value": text})),
        "active": boolean,
        "name": many(
            element(
                {
                    "use": code,
                    "text": text,
                    "family": text,
                    "given": many(text),
                    "prefix": many(text),
                    "suffix": many(text),
                }
            )
        ),
        "telecom": many(element({"system": code, "value": text, "use": code, "rank": positive_int})),
        "gender": code,
        "birthDate": date,
        "deceasedBoolean": boolean,
        "deceasedDateTime": date_time,
        "communication": many(element({"language": concept, "preferred": boolean}, ("language",))),
    },
)


def plain_patient(given: Mapping[str, Any]) -> Plain | None:
    """A Patient read without full validation when it is in the plain shape: who the patient is, how to reach them,
    their language, whether they died."""
    if "deceasedBoolean" in given and "deceasedDateTime" in given:  # deceased[x] is one or the other
        return None
    return _patient(given)


#: A Procedure: a status, a code, its Patient and the day it was performed.
plain_procedure = resource(
    "Procedure",
    {
        "status": code,
        "category": concept,
        "code": concept,
        "subject": reference,
        "encounter": reference,
        "performedDateTime": date_time,
    },
    ("status", "subject"),
)
#: A MedicationAdministration: a status, a coded medication (not a reference), its Patient and the day it was given.
plain_administration = resource(
    "MedicationAdministration",
    {
        "status": code,
        "category": concept,
        "medicationCodeableConcept": concept,
        "subject": reference,
        "context": reference,
        "effectiveDateTime": date_time,
    },
    ("status", "medicationCodeableConcept", "subject", "effectiveDateTime"),
)

PLAIN_READERS: dict[str, Callable[[Mapping[str, Any]], Plain | None]] = {
    "Patient": plain_patient,
    "Procedure": plain_procedure,
    "MedicationAdministration": plain_administration,
}
