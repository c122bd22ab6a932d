"""Infusion dates in the admin: a new infusion that contradicts the patient's record, or a birth date corrected
to after an infusion, is a form error; a valid infusion is recorded and planned by the same flow as the API's."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from surveillance.care import lifecycle
from surveillance.models import CarTProduct, Infusion, Patient, VisitStatus

DAY = dt.timedelta(days=1)


def add(client, patient, day: dt.date):
    product = CarTProduct.objects.get(code="yescarta")
    return client.post(
        reverse("admin:surveillance_infusion_add"),
        {"patient": patient.pk, "product": product.pk, "infusion_date": day.isoformat(), "source_system": ""},
    )


def test_it_refuses_an_infusion_before_the_birth_date(login, physician_a, centre_a, make_patient, today):
    patient = make_patient(centre_a, birth_date=today - 30 * DAY)
    response = add(login(physician_a), patient, today - 60 * DAY)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"infusion_date": ["is before the patient's birth date"]}
    assert not Infusion.objects.exists()


def test_it_refuses_an_infusion_after_the_recorded_death(login, physician_a, centre_a, make_patient, today):
    patient = make_patient(centre_a)
    lifecycle.patient_close(patient, status="deceased", on=today - 40 * DAY, reason="Died")
    response = add(login(physician_a), patient, today - 10 * DAY)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "infusion_date": ["is after the patient's recorded date of death"]
    }
    assert not Infusion.objects.exists()


def test_it_records_and_plans_a_valid_infusion(login, physician_a, centre_a, make_patient, today):
    patient = make_patient(centre_a)
    response = add(login(physician_a), patient, today - 100 * DAY)
    assert response.status_code == 302
    infusion = Infusion.objects.get()
    assert infusion.protocol is not None
    assert infusion.visits.filter(status=VisitStatus.SCHEDULED).exists()
    assert infusion.visits.filter(status=VisitStatus.UNRECORDED).exists()


def test_it_refuses_a_birth_date_corrected_to_after_an_infusion(login, coordinator_a, planned, centre_a, today):
    patient = planned(centre_a, days_ago=60).patient
    client = login(coordinator_a)
    url = reverse("admin:surveillance_patient_change", args=[patient.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(centre=patient.centre_id, birth_date=(today - 30 * DAY).isoformat(), contact_consent="on")
    data["reminders_opted_out_at_0"] = data["reminders_opted_out_at_1"] = ""
    data.pop("reminders_opted_out_at", None)
    response = client.post(url, data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "birth_date": ["is after the date of one of the patient's infusions"]
    }
    assert Patient.objects.get().birth_date == patient.birth_date
