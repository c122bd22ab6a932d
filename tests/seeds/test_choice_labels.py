"""Every status and every patient request reads from the labels catalogue, in English and in Spanish: the models'
choices take their labels from it, so a list, its filter, a page and an email all say the same words, and a
catalogue without one of them is refused at load time."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from django.conf import settings
from django.db import models
from django.utils import translation

import surveillance.models
from surveillance.models import VisitStatus
from surveillance.models.patients import LadderStage
from surveillance.models.visits import RequestKind
from surveillance.seeds import labels
from surveillance.seeds.loader import SeedError, seeds_load
from tests.seeds.conftest import seeds_copy_with_labels

SEEDS = settings.CARTWATCH["SEEDS_DIR"]


def status_and_request_choices() -> list[type[models.TextChoices]]:
    """Every ``*Status`` choices class of the models' modules, the ladder's stages and the patient requests."""
    found: dict[str, type[models.TextChoices]] = {}
    for module_info in pkgutil.iter_modules(surveillance.models.__path__):
        module = importlib.import_module(f"surveillance.models.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, models.TextChoices) and value.__name__.endswith("Status"):
                found[value.__name__] = value
    return [*found.values(), LadderStage, RequestKind]


def test_it_labels_every_status_and_request_in_english_and_spanish_from_the_catalogue():
    catalogue = labels.catalogue_read(SEEDS)
    choices = status_and_request_choices()
    assert len(choices) >= 10
    for enum in choices:
        for member in enum:
            with translation.override("en"):
                english = str(member.label)
            with translation.override("es"):
                spanish = str(member.label)
            entries = [
                found for code in labels.CHOICE_CODES if (found := catalogue.find(code)) and code.endswith(member)
            ]
            assert {"en": english, "es": spanish} in entries, f"{enum.__name__}.{member.name}"
            assert english and spanish and spanish != member.value, f"{enum.__name__}.{member.name}"


def test_it_shows_a_status_in_the_active_language():
    with translation.override("es"):
        assert VisitStatus.SCHEDULED.label == labels.label("visit.scheduled", "es") == "Programada"
        assert RequestKind.RESCHEDULE.label == "Pide cambiar la fecha"
    with translation.override("es-ar"):
        assert str(LadderStage.OVERDUE.label) == "Con retraso"
    with translation.override("fr"):
        assert str(VisitStatus.MISSED.label) == "Missed"  # no French: English
    with translation.override(None):
        assert str(RequestKind.DONE_ELSEWHERE.label) == "Says it was done elsewhere"


@pytest.mark.django_db
def test_it_refuses_seeds_whose_catalogue_leaves_a_status_unlabelled(tmp_path):
    target, data, write = seeds_copy_with_labels(tmp_path)
    del data["requests"]["request.reschedule"]
    write()
    with pytest.raises(SeedError, match=r"statuses or requests without a label: request\.reschedule"):
        seeds_load(target)
