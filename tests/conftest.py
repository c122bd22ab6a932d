"""Shared fixtures: the seeded catalogue and protocols, and the personas every test module speaks of.

Personas: a coordinator and a physician at centre A, a physician at centre B, an auditor of both, and the
service's administrator.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
UTC = dt.UTC


def services_required() -> bool:
    """In CI a test that needs PostgreSQL, Redis or a browser fails when it is missing; elsewhere it skips."""
    return bool(os.environ.get("CARTWATCH_REQUIRE_SERVICES") or os.environ.get("CI"))


def missing_service(message: str) -> None:
    if services_required():
        pytest.fail(f"required service unavailable: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Load the seeds once per test session: every test sees the product catalogue and both protocols."""
    from django.conf import settings

    from surveillance.seeds.loader import seeds_load

    with django_db_blocker.unblock():
        seeds_load(settings.CARTWATCH["SEEDS_DIR"])


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts and ends with an empty cache: what a test cached was read from rows that its transaction
    rolls back, under ids the next test's rows may take again (SQLite reuses them), and the API's rate-limit
    counters live there too, so each test starts with a full allowance."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


DB_FIXTURES = frozenset({"db", "transactional_db", "live_server", "django_db_reset_sequences"})


@pytest.fixture(autouse=True)
def _seeds_present(request, django_db_blocker):
    """Every test that touches the database finds the seeds. A transactional test (a live server, worker
    processes) ends with every table flushed, so the next one may find them gone: it loads them again."""
    if not (request.node.get_closest_marker("django_db") or DB_FIXTURES & set(request.fixturenames)):
        return
    from django.conf import settings

    from surveillance.models import CarTProduct
    from surveillance.seeds.loader import seeds_load

    with django_db_blocker.unblock():
        if not CarTProduct.objects.exists():
            seeds_load(settings.CARTWATCH["SEEDS_DIR"])


@pytest.fixture
def centre_a(db):
    from surveillance.models import TreatmentCentre

    return TreatmentCentre.objects.create(
        code="a", name="Centre A", time_zone="America/New_York", care_team_email="team-a@example.org"
    )


@pytest.fixture
def centre_b(db):
    from surveillance.models import TreatmentCentre

    return TreatmentCentre.objects.create(
        code="b", name="Centre B", time_zone="Europe/Madrid", care_team_email="team-b@example.org"
    )


def _staff(django_user_model, username: str, role: str, *centres):
    from surveillance.access.roles import roles_sync
    from surveillance.models import CentreMembership

    group = roles_sync()[role]
    user = django_user_model.objects.create_user(username=username, password="correct-horse-battery", is_staff=True)
    user.groups.add(group)
    for centre in centres:
        CentreMembership.objects.create(user=user, centre=centre, role=role)
    return user


@pytest.fixture
def coordinator_a(django_user_model, centre_a):
    return _staff(django_user_model, "coordinator-a", "coordinator", centre_a)


@pytest.fixture
def physician_a(django_user_model, centre_a):
    return _staff(django_user_model, "physician-a", "physician", centre_a)


@pytest.fixture
def physician_b(django_user_model, centre_b):
    return _staff(django_user_model, "physician-b", "physician", centre_b)


@pytest.fixture
def auditor(django_user_model, centre_a, centre_b):
    return _staff(django_user_model, "auditor", "auditor", centre_a, centre_b)


@pytest.fixture
def administrator(django_user_model):
    """The service's administrator: a superuser, who manages API tokens and webhooks (no clinical role does)."""
    return django_user_model.objects.create_superuser(
        username="administrator", password="correct-horse-battery", email="admin@example.org"
    )


@pytest.fixture
def make_patient():
    counter = iter(range(1, 10**6))

    def make(centre, **fields):
        from surveillance.models import Patient

        n = next(counter)
        values = {
            "mrn": f"MRN{n:05d}",
            "given_name": "Alex",
            "family_name": f"Rivera{n}",
            "birth_date": dt.date(1970, 5, 17),
            "email": f"patient{n}@example.org",
        }
        values.update(fields)
        return Patient.objects.create(centre=centre, **values)

    return make


@pytest.fixture
def make_infusion():
    def make(patient, product: str = "yescarta", infusion_date=dt.date(2026, 1, 31), flags=(), **fields):
        from surveillance.models import CarTProduct, Infusion
        from surveillance.models.patients import FlagSource, RiskFlag

        infusion = Infusion.objects.create(
            patient=patient,
            product=CarTProduct.objects.get(code=product),
            infusion_date=infusion_date,
            **fields,
        )
        for code in flags:
            RiskFlag.objects.create(
                infusion=infusion, code=code, source=FlagSource.CLINICIAN, observed_on=infusion_date
            )
        return infusion

    return make


@pytest.fixture
def ehr_connection(centre_a):
    """Centre A's EHR connection, never pulled (its server is not reached)."""
    from surveillance.models import EhrConnection

    return EhrConnection.objects.create(
        centre=centre_a,
        name="Epic production",
        fhir_base_url="https://ehr.example.org/fhir/R4",
        token_url="https://ehr.example.org/oauth2/token",
        client_id="cartwatch",
        private_key_ref="env:CARTWATCH_EHR_KEY",
        key_id="k1",
    )
