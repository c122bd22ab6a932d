"""The care team's weekly digest counts the second-cancer signals waiting for a physician and links each review,
without naming the patient or the kind of cancer beside a patient."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail

from surveillance.reminders import sweep
from surveillance.signals.review import signals_record
from surveillance.signals.rules import ClinicalRecords, Diagnosis, LabResult
from tests.signals.conftest import INFUSED, day

pytestmark = pytest.mark.django_db
MONDAY = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)


def test_it_counts_and_links_the_open_signal_reviews_of_the_centre(
    settings, centre_a, centre_b, make_patient, make_infusion
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    patient = make_patient(centre_a, mrn="MRN-SIGNAL-7")
    infusion = make_infusion(patient, infusion_date=INFUSED)
    records = ClinicalRecords(
        (LabResult("751-8", 1.1, "10*3/uL", day(274), "Observation/m9"),), (Diagnosis("icd10", "C84.40", day(425)),)
    )
    signals_record(infusion, records, source="fhir")
    assert sweep.care_team_digest_send(MONDAY) == 2
    digest_a = next(m for m in mail.outbox if m.to == [centre_a.care_team_email])
    digest_b = next(m for m in mail.outbox if m.to == [centre_b.care_team_email])
    assert "Second-cancer signals waiting for a physician: 2 (neutropenia: 1, t_cell_lymphoma: 1)" in digest_a.body
    reviews = list(patient.signal_reviews.order_by("priority"))
    for review in reviews:
        assert f"/admin/surveillance/signalreview/{review.pk}/change/" in digest_a.body
    assert "priority 1" in digest_a.body
    assert "MRN-SIGNAL-7" not in digest_a.body and patient.family_name not in digest_a.body
    assert f"/admin/surveillance/patient/{patient.pk}/" not in digest_a.body
    assert "Second-cancer signals waiting for a physician: 0" in digest_b.body
    assert "Signal reviews to decide" in digest_a.alternatives[0][0]
