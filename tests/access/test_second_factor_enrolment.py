"""Self-service second factor: a signed-in user enrols an authenticator from a server-drawn QR code, the device
counts only once a code from it is proved, and the recovery codes shown once each sign in once."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from surveillance.access.second_factor import user_needs_second_factor
from surveillance.models import AuditEntry
from tests.access.test_second_factor import code_now, sign_in, wrong_code

pytestmark = pytest.mark.django_db
PAGE = "admin:second_factor"


def _enrol(client: Client) -> tuple[TOTPDevice, list[str]]:
    page = client.get(reverse(PAGE))
    pending = page.context["pending"]
    confirmed = client.post(reverse(PAGE), {"otp_token": code_now(pending)})
    assert confirmed.status_code == 200
    return pending, confirmed.context["codes"]


def test_it_enrols_with_a_proved_code_and_shows_the_recovery_codes_once(login, coordinator_a):
    client = login(coordinator_a)
    page = client.get(reverse(PAGE))
    body = page.content.decode()
    pending = page.context["pending"]
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert "<svg" in body and "<path" in body and pending.key not in body  # the QR is drawn here, no outside image
    assert 'src="http' not in body
    assert page.context["secret"] in body

    confirmed = client.post(reverse(PAGE), {"otp_token": code_now(pending)})
    codes = confirmed.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(code in confirmed.content.decode() for code in codes)
    pending.refresh_from_db()
    assert pending.confirmed
    entry = AuditEntry.objects.get(action="second_factor_enrolled", actor=coordinator_a)
    assert entry.changes == {"replaced": False, "recovery_codes": 10, "first_enrolment": False}
    # the session goes on, verified by the new device; the codes are never shown again
    again = client.get(reverse(PAGE))
    assert again.status_code == 200 and not any(code in again.content.decode() for code in codes)
    assert "10 recovery codes left" in again.content.decode()


def test_it_does_not_count_an_unconfirmed_device(login, coordinator_a):
    client = login(coordinator_a)
    pending = client.get(reverse(PAGE)).context["pending"]
    refused = client.post(reverse(PAGE), {"otp_token": wrong_code(pending)})
    assert refused.status_code == 400 and "does not match" in refused.content.decode()
    pending.refresh_from_db()
    assert not pending.confirmed and not StaticToken.objects.exists()
    coordinator_a.refresh_from_db()
    assert not user_needs_second_factor(coordinator_a)
    # its code does not count at sign-in: no confirmed device, so no code is asked for and none is checked
    signed = Client(REMOTE_ADDR="10.5.5.1")
    assert sign_in(signed, "coordinator-a", code_now(pending)).status_code == 302
    assert not AuditEntry.objects.filter(action="second_factor_enrolled").exists()


def test_it_signs_in_with_a_recovery_code_once_and_not_twice(login, coordinator_a):
    _device, codes = _enrol(login(coordinator_a))
    first = Client(REMOTE_ADDR="10.5.5.2")
    assert sign_in(first, "coordinator-a", codes[0]).status_code == 302
    assert first.get(reverse("admin:index")).status_code == 200
    assert AuditEntry.objects.filter(action="recovery_code_used", actor=coordinator_a).count() == 1

    second = Client(REMOTE_ADDR="10.5.5.3")
    refused = sign_in(second, "coordinator-a", codes[0])
    assert refused.status_code == 200 and "_auth_user_id" not in second.session
    assert b"not valid" in refused.content
    assert StaticToken.objects.filter(device__user=coordinator_a).count() == 9


def test_it_replaces_an_enrolled_device_only_from_a_verified_session(login, coordinator_a):
    client = login(coordinator_a)
    old, _codes = _enrol(client)
    new_page = client.get(reverse(PAGE) + "?replace=1")
    new = new_page.context["pending"]
    assert new.pk != old.pk
    client.post(reverse(PAGE), {"otp_token": code_now(new)})
    assert list(TOTPDevice.objects.filter(user=coordinator_a).values_list("pk", flat=True)) == [new.pk]
    # a password-only session of an enrolled user never reaches the page
    assert login(coordinator_a).get(reverse(PAGE)).status_code == 302
