"""The signal rules as seeded, and Synthea-shaped records for one patient infused on 31 Jan 2025."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from tests.conftest import REPO

INFUSED = dt.date(2025, 1, 31)
#: The newest version of the rules, the one imports evaluate with.
RULES_FILE = sorted((REPO / "seeds" / "signals").glob("signals-v*.yaml"), key=lambda p: int(p.stem.split("-v")[1]))[-1]


def day(n: int) -> dt.date:
    return INFUSED + dt.timedelta(days=n)


@pytest.fixture(scope="session")
def rules_data() -> dict:
    return yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def rules(rules_data):
    from surveillance.signals.rules import ruleset_from_dict

    return ruleset_from_dict(rules_data)


def normal_cbc(on: dt.date, prefix: str = "cbc") -> list:
    """A normal blood count as Synthea reports one: WBC, haemoglobin, MCV, platelets, ANC, lymphocytes."""
    from surveillance.signals.rules import LabResult

    ref = f"Observation/{prefix}-{on.isoformat()}"
    return [
        LabResult("6690-2", 6.8, "10*3/uL", on, f"{ref}-wbc"),
        LabResult("718-7", 14.1, "g/dL", on, f"{ref}-hgb"),
        LabResult("787-2", 88.0, "fL", on, f"{ref}-mcv"),
        LabResult("777-3", 260.0, "10*3/uL", on, f"{ref}-plt"),
        LabResult("751-8", 4.1, "10*3/uL", on, f"{ref}-anc"),
        LabResult("731-0", 1.9, "10*3/uL", on, f"{ref}-lym"),
    ]


def monthly_normal_counts(months: int = 24) -> list:
    return [result for n in range(-1, months) for result in normal_cbc(day(30 * n + 15))]
