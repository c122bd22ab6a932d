"""A patient's printable schedule: the next visits, in the patient's language, with the centre's details."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.care import lifecycle
from surveillance.models import AuditEntry, FollowUpVisit, VisitStatus
from surveillance.models.patients import PatientStatus
from surveillance.reminders.messages import long_date

pytestmark = pytest.mark.django_db


@pytest.fixture
def centre(centre_a):
    centre_a.phone = "+1 212 555 0100"
    centre_a.address = "1 Clinic Way\nNew York, NY 10001"
    centre_a.opening_hours = "Mon-Fri 08:00-17:00"
    centre_a.save()
    return centre_a


def _url(patient) -> str:
    return reverse("admin:surveillance_patient_schedule", args=[patient.pk])


def _coming(patient, today: dt.date) -> list[FollowUpVisit]:
    return list(
        FollowUpVisit.objects.filter(
            infusion__patient=patient, status=VisitStatus.SCHEDULED, window_end__gte=today
        ).order_by("due_date", "pk")
    )


def test_it_prints_the_next_visits_with_the_centre_details(login, coordinator_a, planned, centre, today):
    infusion = planned(centre, days_ago=95, given_name="Marta", family_name="Paper", email="")
    html = login(coordinator_a).get(_url(infusion.patient)).content.decode()
    coming = _coming(infusion.patient, today)
    assert coming, "a patient 95 days after infusion has visits to come"
    assert "Dear Marta Paper," in html
    assert long_date(coming[0].due_date, "en") in html
    assert "call us at +1 212 555 0100 (Mon-Fri 08:00-17:00)" in html
    assert "1 Clinic Way" in html
    assert infusion.patient.mrn not in html and infusion.product.brand not in html  # minimum necessary
    assert html.count("<tr><td>") == min(len(coming), 12)


def test_it_writes_the_letter_in_the_patients_language(login, coordinator_a, planned, centre, today):
    infusion = planned(centre, days_ago=95, given_name="Lucía", preferred_language="es")
    html = login(coordinator_a).get(_url(infusion.patient)).content.decode()
    assert "Estimado/a Lucía" in html and 'lang="es"' in html
    assert long_date(_coming(infusion.patient, today)[0].due_date, "es") in html


def test_it_lists_no_visits_once_follow_up_has_ended(login, coordinator_a, planned, centre, today):
    infusion = planned(centre, days_ago=95)
    lifecycle.patient_close(infusion.patient, status=PatientStatus.DECEASED, on=today, reason="Died")
    html = login(coordinator_a).get(_url(infusion.patient)).content.decode()
    assert "Follow-up has ended" in html and "<tbody>" not in html


def test_it_is_audited_and_closed_to_another_centre(login, coordinator_a, physician_b, planned, centre):
    infusion = planned(centre)
    assert login(physician_b).get(_url(infusion.patient)).status_code in (403, 404)
    login(coordinator_a).get(_url(infusion.patient))
    assert AuditEntry.objects.filter(action="print_schedule", patient_id=infusion.patient_id).count() == 1
