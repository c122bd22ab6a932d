"""Fixtures of the PHI tests: every logger at DEBUG into one capture, the sentinel patient at centre A with an
infusion planned, and the loopback servers the entry points talk to (SMTP and Twilio from the reminder tests, the
Bulk Data server's key and connection from the import tests, the admin's logged-in clients)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from surveillance.care import planning
from tests.admin.conftest import login  # noqa: F401
from tests.imports.conftest import make_connection, pull_settings, rsa_pem  # noqa: F401
from tests.phi.sentinel import BIRTH, EMAIL, FAMILY, GIVEN, MRN, PHONE_E164, PINNED, Capture, logger_names
from tests.reminders.conftest import open_visit, smtp_server, smtp_settings, twilio_server, twilio_settings  # noqa: F401


@pytest.fixture
def captured():
    """Every record of the root logger, the project's loggers and their libraries', at DEBUG."""
    handler = Capture()
    names = logger_names()
    previous = {}
    for name in names:
        logger = logging.getLogger(name)
        previous[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(previous[name])
        for name, level in PINNED.items():  # still as quiet as the code made it, whatever the test turned up
            assert logging.getLogger(name).getEffectiveLevel() >= level, name


@pytest.fixture
def sentinel(centre_a, make_patient, make_infusion):
    """The sentinel patient, with an infusion 60 days ago planned by the real planner."""
    patient = make_patient(
        centre_a,
        given_name=GIVEN,
        family_name=FAMILY,
        mrn=MRN,
        email=EMAIL,
        phone=PHONE_E164,
        birth_date=dt.date.fromisoformat(BIRTH),
    )
    infusion = make_infusion(patient, infusion_date=timezone.localdate() - dt.timedelta(days=60))
    planning.infusion_plan(infusion)
    return patient
