"""The patient page says why each infusion follows the intensified or the standard variant."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_it_names_every_trigger_of_the_intensified_variant(login, coordinator_a, planned, centre_a):
    infusion = planned(centre_a, flags=["clonal_haematopoiesis"], birth_date=dt.date(1950, 3, 1))
    response = login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    assert response.status_code == 200
    assert (
        "Intensified follow-up because: Clonal haematopoiesis (CH/CHIP); Aged 65 or over at infusion."
        in response.content.decode()
    )


def test_it_says_when_nothing_calls_for_the_intensified_variant(login, coordinator_a, planned, centre_a):
    infusion = planned(centre_a, birth_date=dt.date(1980, 3, 1))
    response = login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    assert "Standard follow-up: no risk trigger recorded or derived." in response.content.decode()
