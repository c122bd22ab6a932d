"""An SMS says the minimum (centre, date, number to call, link), fits one segment in English, and its segments are
counted as the network bills them (GSM-7 in English, UCS-2 for Spanish accents)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import signing

from surveillance.models.reminders import Purpose
from surveillance.reminders import sms
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOW = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://cartwatch.example.org"
    return settings


def _sms(centre, make_patient, open_visit, language: str, purpose: str = Purpose.UPCOMING):
    centre.phone = "+1 617-555-0100"
    centre.save()
    patient = make_patient(centre, phone="+16175550142", sms_consent=True, preferred_language=language)
    visit = open_visit(patient, NOW.date())
    visit.infusion.indication = "DLBCL (C83.3)"
    visit.infusion.save()
    reminder = add_reminder(visit, NOW, purpose=purpose, channel="sms")
    return patient, reminder, sms.sms_text(reminder, NOW)


def test_it_counts_gsm7_and_ucs2_segments_as_the_network_does():
    assert sms.sms_segments("a" * 160) == 1
    assert sms.sms_segments("a" * 161) == 2
    assert sms.sms_segments("a" * 306) == 2 and sms.sms_segments("a" * 307) == 3
    assert sms.sms_segments("€" * 80) == 1 and sms.sms_segments("€" * 81) == 2  # extension characters count twice
    assert sms.sms_segments("á" * 70) == 1 and sms.sms_segments("á" * 71) == 2
    assert sms.sms_segments("ñé" * 80) == 1  # ñ and é are in GSM-7's own set


def test_it_fits_an_english_reminder_in_one_segment_with_the_minimum(site, centre_a, make_patient, open_visit):
    patient, reminder, text = _sms(centre_a, make_patient, open_visit, "en")
    assert sms.sms_segments(text) == 1, (len(text), text)
    assert "Centre A" in text and "617-555-0100" in text
    due = reminder.visit.due_date
    assert f"{due.day} {due:%b} {due.year}" in text
    infusion = reminder.visit.infusion
    for secret in (patient.given_name, patient.family_name, patient.mrn, infusion.product.brand, "DLBCL", "C83"):
        assert secret and secret not in text


def test_it_counts_a_spanish_reminder_in_ucs2_segments(site, centre_b, make_patient, open_visit):
    _, _, text = _sms(centre_b, make_patient, open_visit, "es")
    assert "próxima" in text  # an accent outside GSM-7: the message is UCS-2
    assert sms.sms_segments(text) == 3
    assert sms.sms_segments(text) == -(-len(text) // 67)


def test_it_links_to_the_visits_confirmation_page(site, client, centre_a, make_patient, open_visit):
    _, _, text = _sms(centre_a, make_patient, open_visit, "en")
    link = re.search(r"https://cartwatch\.example\.org(/c/\S+/)", text)[1]
    landing = client.get(link)
    assert landing.status_code == 302
    page = client.get(landing["Location"])
    assert page.status_code == 200 and "Centre A" in page.content.decode()
    forged = link.replace(link.split(".")[-1], "0" * 12 + "/")
    assert client.get(forged).status_code == 400
    with pytest.raises(signing.SignatureExpired):
        token = link.split("/")[2]
        sms.short_link_read(token, NOW.date() + dt.timedelta(days=181))


def test_it_tells_of_a_cancellation_without_a_link(site, centre_a, make_patient, open_visit):
    _, _, text = _sms(centre_a, make_patient, open_visit, "en", purpose=Purpose.CANCELLED)
    assert "cancelled" in text and "http" not in text
