"""The reasons the service writes on visits and patients are stored in English whatever language the request was
served in, and shown in the reader's language; what a person typed is shown as typed."""

from __future__ import annotations

import pytest
from django.utils import translation

from surveillance.care import reasons
from surveillance.models import PatientStatus
from surveillance.reminders.sweep import MISSED_REASON


def test_it_writes_the_services_reasons_in_english_whatever_language_is_active():
    with translation.override("es"):
        assert reasons.patient_closed_reason(PatientStatus.DECEASED) == "Patient deceased"
        assert reasons.lost_reason(3) == "No visit attended after 3 consecutive missed visits"
        assert reasons.replan_removed_reason("EHR import") == "Removed by re-plan: EHR import"


@pytest.mark.parametrize(
    ("stored", "spanish"),
    [
        (MISSED_REASON, "La ventana se cerró sin una visita registrada"),
        (reasons.lost_reason(3), "Ninguna visita atendida tras 3 visitas perdidas seguidas"),
        (
            reasons.replan_removed_reason(reasons.EHR_IMPORT),
            "Eliminada por una replanificación: Importación de la historia clínica electrónica",
        ),
        (reasons.patient_closed_reason(PatientStatus.WITHDRAWN), "Paciente: retirado"),
    ],
)
def test_it_shows_the_services_reasons_in_the_readers_language(stored, spanish):
    with translation.override("es"):
        shown = reasons.reason_shown(stored)
    assert shown.lower() == spanish.lower()
    with translation.override("en"):
        assert reasons.reason_shown(stored) == stored


def test_it_shows_a_persons_words_as_typed():
    with translation.override("es"):
        assert reasons.reason_shown("Patient moved abroad, will call") == "Patient moved abroad, will call"
        assert reasons.reason_shown("Patient somewhere else") == "Patient somewhere else"
        assert reasons.reason_shown("") == ""
