"""The sentinel patient's identifiers, the log capture and the search for them that every PHI test shares.

The sentinel's strings are distinctive enough that finding one anywhere (a log record, an error body, an email
subject, an SMS) can only be a leak. The phone number is searched in the forms a program writes it (E.164, as
typed, national digits), the birth date in the forms a template or a log could print it.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterable

from django.conf import settings

from tests.imports.conftest import HCPCS, concept

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types: MR is the MRN

GIVEN, FAMILY = "Quillonia", "Vexborough"
MRN = "MRN-ZQ-774411"
EMAIL = "quillonia.vexborough@sentinel.example"
PHONE = "+1 617-555-0177"  # as typed; a valid number, so that SMS can be sent to it
PHONE_E164 = "+16175550177"
BIRTH = "1953-11-29"
BIRTH_FORMS = (BIRTH, "11/29/1953", "29/11/1953", "29.11.1953", "Nov 29, 1953", "29 Nov 1953", "November 29, 1953")
NAMES = (GIVEN, FAMILY)  # searched case-insensitively
#: What an SMS body must never hold (the minimum necessary: the centre, the date, a number to call, a link).
SMS_FORBIDDEN = (*NAMES, MRN, *BIRTH_FORMS)
SENTINELS = (*NAMES, MRN, EMAIL, PHONE, PHONE_E164, "617-555-0177", "6175550177", *BIRTH_FORMS)

#: Loggers quieted in code whatever the configuration says, because the library behind them logs request bodies
#: (numbers, message text): they stay as the code sets them, and the capture checks that they still are.
PINNED = {"surveillance.sms.sdk": logging.WARNING}
#: The root, Django, Celery, the project, and the libraries that talk to the providers and the EHRs (each set
#: explicitly: a library may give its logger a level of its own).
FAMILIES = ("", "django", "celery", "surveillance", "config", "anymail", "twilio", "urllib3", "requests")


def logger_names() -> list[str]:
    """The root, the project's and its libraries' families, every logger the project has created, and those
    settings.LOGGING quiets (an operator may lower them; a 404's warning names the path). Not the SQL logger,
    which never logs at DEBUG whatever it is told (``test_it_never_logs_sql_...`` drives it)."""
    configured = set(settings.LOGGING.get("loggers", {})) - {"django.db.backends"}
    created = {name for name in logging.root.manager.loggerDict if name.startswith(("surveillance", "config"))}
    return sorted((set(FAMILIES) | configured | created) - set(PINNED))


class Capture(logging.Handler):
    """Keeps every record: its formatted message, its arguments and any exception text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        self.texts.append((record.name, "\n".join(parts)))

    def found(self) -> list[tuple[str, str]]:
        """The records as (where, text) pairs for ``leaks``."""
        assert self.texts, "nothing was logged: the capture is not attached"
        return [(f"log {name}", text) for name, text in self.texts]


def fhir_patient(**overrides) -> dict:
    """The sentinel as an EHR sends a FHIR Patient (its MRN typed MR), with ``overrides``."""
    resource = {
        "resourceType": "Patient",
        "id": "sentinel",
        "identifier": [{"type": concept(V2_0203, "MR"), "system": "urn:example:mrn", "value": MRN}],
        "name": [{"given": [GIVEN], "family": FAMILY}],
        "telecom": [{"system": "email", "value": EMAIL}, {"system": "phone", "value": PHONE}],
        "birthDate": BIRTH,
        "gender": "female",
    }
    resource.update(overrides)
    return resource


def car_t_procedure(performed: str) -> dict:
    """The sentinel's CAR-T infusion (Yescarta), its subject displayed by name as some EHRs do."""
    return {
        "resourceType": "Procedure",
        "id": "car-t",
        "status": "completed",
        "subject": {"reference": "Patient/sentinel", "display": f"{GIVEN} {FAMILY}"},
        "code": concept(HCPCS, "Q2041"),
        "performedDateTime": performed,
    }


class Responses:
    """Every error response of a run (4xx/5xx bodies, and the error list of a 200 import report), to be searched
    at the end."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, int, str]] = []

    def keep(self, label: str, response, *, expect: int | None = None):
        if expect is not None:
            assert response.status_code == expect, (label, response.status_code, response.content[:500])
        body = response.content.decode("utf-8", "replace")
        if response.status_code >= 400:
            self.errors.append((label, response.status_code, body))
        elif body.startswith("{") and "errors" in body:
            report = json.loads(body)
            if report.get("errors"):
                self.errors.append((label, response.status_code, json.dumps(report["errors"])))
        return response

    def found(self) -> list[tuple[str, str]]:
        """The error bodies as (where, text) pairs for ``leaks``."""
        return [(f"{label} ({code})", body) for label, code, body in self.errors]


def around(text: str, needle: str, width: int = 120) -> str:
    """The leak in its context, for the failure message."""
    at = text.lower().index(needle)
    return text[max(at - width, 0) : at + len(needle) + width].replace("\n", " ")


def leaks(places: Iterable[tuple[str, str]], needles: Iterable[str] = SENTINELS) -> list[str]:
    """Each (where, text) pair holding one of ``needles`` (case-insensitive), with the leak in context."""
    places = list(places)
    found = []
    for needle in (n.lower() for n in needles):
        found += [f"{where}: {around(text, needle)}" for where, text in places if needle in text.lower()]
    return list(dict.fromkeys(found))


def subjects(smtp_server) -> list[tuple[str, str]]:
    """The Subject header of every message the loopback SMTP server accepted, as (where, text) pairs."""
    return [("subject", str(message["Subject"])) for message in smtp_server.messages]
