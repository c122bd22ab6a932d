"""The patient form stores the phone number in E.164 with the consent and channel set beside it, and refuses a
number that cannot be one with a form error, saving nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from surveillance.models import Patient

pytestmark = pytest.mark.django_db


def _form_data(client, url: str, patient: Patient) -> dict:
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data.update(centre=patient.centre_id, birth_date=patient.birth_date.isoformat(), contact_consent="on")
    data["reminders_opted_out_at_0"] = data["reminders_opted_out_at_1"] = ""
    data.pop("reminders_opted_out_at", None)
    return data


def test_it_saves_the_number_in_e164_with_the_sms_choices(login, coordinator_a, planned, centre_a):
    patient = planned(centre_a).patient
    client = login(coordinator_a)
    url = reverse("admin:surveillance_patient_change", args=[patient.pk])
    data = _form_data(client, url, patient)
    data.update(phone="(617) 555-0142", sms_consent="on", preferred_channel="sms")
    assert client.post(url, data).status_code == 302
    patient.refresh_from_db()
    assert (patient.phone, patient.sms_consent, patient.preferred_channel) == ("+16175550142", True, "sms")


def test_it_refuses_an_impossible_number_with_a_form_error(login, coordinator_a, planned, centre_a):
    patient = planned(centre_a).patient
    client = login(coordinator_a)
    url = reverse("admin:surveillance_patient_change", args=[patient.pk])
    data = _form_data(client, url, patient)
    data.update(phone="555-01", family_name="Changed")
    response = client.post(url, data)
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["phone"]
    patient.refresh_from_db()
    assert patient.family_name != "Changed"
