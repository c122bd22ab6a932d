"""Phone numbers are stored in E.164 whichever way they are written, on every write path; an impossible number is
a field error and nothing is saved."""

from __future__ import annotations

import pytest

from surveillance.care.contact_details import PhoneInvalid, phone_normalise
from surveillance.models import Patient
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("(202) 555-0123", "US", "+12025550123"),
        ("+1 202-555-0123", None, "+12025550123"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("+34 612 345 678", "US", "+34612345678"),
        ("", "US", ""),
    ],
)
def test_it_writes_a_number_in_e164_read_with_the_centres_country(raw, region, e164):
    assert phone_normalise(raw, region) == e164


@pytest.mark.parametrize("raw", ["+1-555-0001", "call me", "12", "+34 12"])
def test_it_refuses_what_cannot_be_a_number_without_quoting_it(raw):
    with pytest.raises(PhoneInvalid) as refused:
        phone_normalise(raw, "US")
    assert raw not in str(refused.value)


def test_it_normalises_the_apis_number_and_names_a_bad_one_as_a_field(centre_a):
    from surveillance.api.auth import api_token_create

    api = token_client(api_token_create("epic-a", [centre_a])[1])
    created = api.post(
        "/api/v1/patients",
        {"mrn": "A-1", "phone": "(202) 555-0123", "sms_consent": True, "preferred_channel": "sms"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    patient = Patient.objects.get(mrn="A-1")
    assert (patient.phone, patient.sms_consent, patient.preferred_channel) == ("+12025550123", True, "sms")

    refused = api.post("/api/v1/patients", {"mrn": "A-2", "phone": "+1-555-0001"}, format="json")
    assert refused.status_code == 400
    assert set(refused.json()["fields"]) == {"phone"}
    assert not Patient.objects.filter(mrn="A-2").exists()
    changed = api.patch(f"/api/v1/patients/{patient.pk}", {"phone": "not a phone"}, format="json")
    assert changed.status_code == 400 and set(changed.json()["fields"]) == {"phone"}
    patient.refresh_from_db()
    assert patient.phone == "+12025550123"


def test_it_imports_the_csvs_contact_columns_and_leaves_out_a_bad_number(centre_a):
    from surveillance.api.auth import api_token_create

    api = token_client(api_token_create("epic-a", [centre_a])[1])
    header = "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,"
    header += "lot_number,sms_consent,preferred_channel\n"
    good = header + "C-1,Ana,Ruiz,1970-01-02,F,,(617) 555-0142,es,yescarta,2025-03-01,,yes,sms\n"
    response = api.generic("POST", "/api/v1/import/csv", good.encode(), content_type="text/csv")
    assert response.status_code == 200, response.json()
    patient = Patient.objects.get(mrn="C-1")
    assert (patient.phone, patient.sms_consent, patient.preferred_channel) == ("+16175550142", True, "sms")

    bad = header + "C-2,Bo,Lee,1970-01-02,M,,555-01,en,yescarta,2025-03-01,,no,email\n"
    response = api.generic("POST", "/api/v1/import/csv", bad.encode(), content_type="text/csv")
    assert response.status_code == 200, response.json()
    ignored = response.json()["ignored"]["by_reason"]
    assert ignored == {"phone number not valid (left out; correct it on the patient page)": 1}
    assert Patient.objects.get(mrn="C-2").phone == ""  # followed all the same, without the number
