"""Care-team emails and the weekly digest are written in the centre's language (patients keep their own)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from surveillance.models.patients import LadderStage
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import messages, sweep
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


def _spanish(centre) -> None:
    centre.language = "es"
    centre.save(update_fields=["language"])


def test_it_writes_a_care_team_email_in_the_centres_spanish(centre_a, make_patient, open_visit):
    _spanish(centre_a)
    patient = make_patient(centre_a, preferred_language="en")
    visit = open_visit(patient, NOW.date())
    care = messages.reminder_message(
        add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE), now=NOW
    )
    html = care.alternatives[0][0]
    assert care.subject == f"Visita atrasada: paciente {patient.pk}"
    assert "Una visita de seguimiento está atrasada" in care.body and "Ábrala en CAR-T Watch" in care.body
    assert '<html lang="es">' in html and "<strong>atrasada</strong>" in html
    assert "overdue" not in care.body.lower()
    assert f"/admin/surveillance/followupvisit/{visit.pk}/change/" in care.body

    # the patient's own email stays in the patient's language
    own = messages.reminder_message(add_reminder(visit, NOW), now=NOW)
    assert own.subject.startswith("Reminder: your follow-up visit on")


def test_it_renders_afresh_when_the_centre_changes_its_language(centre_a, make_patient, open_visit):
    visit = open_visit(make_patient(centre_a), NOW.date())
    reminder = add_reminder(visit, NOW, audience=Audience.CARE_TEAM, purpose=Purpose.WINDOW_OPEN)
    before = messages.reminder_fingerprint(reminder)
    _spanish(centre_a)
    reminder.visit.infusion.patient.centre.refresh_from_db()
    assert messages.reminder_fingerprint(reminder) != before


def test_it_sends_the_weekly_digest_in_the_centres_language(settings, centre_a, centre_b, make_patient, open_visit):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    _spanish(centre_b)
    patient = make_patient(centre_b, ladder_stage=LadderStage.TRACING)
    open_visit(patient, dt.date(2026, 11, 2))
    assert sweep.care_team_digest_send(dt.datetime(2026, 11, 2, 12, tzinfo=UTC)) == 2
    spanish = next(m for m in mail.outbox if m.to == [centre_b.care_team_email])
    english = next(m for m in mail.outbox if m.to == [centre_a.care_team_email])
    assert spanish.subject == "Resumen semanal de seguimiento: Centre B, semana del 02 Nov 2026"
    assert "Pacientes atrasados / en búsqueda / perdidos para el seguimiento: 0 / 1 / 0" in spanish.body
    assert f"/admin/surveillance/patient/{patient.pk}/change/" in spanish.body
    assert '<html lang="es">' in spanish.alternatives[0][0]
    assert english.subject == "Weekly follow-up digest: Centre A, week of 02 Nov 2026"
