"""Staff sign-in with a second factor: enrolled staff give the current TOTP code with the password, a wrong code is
a failed sign-in the throttle counts, ``CARTWATCH_REQUIRE_2FA`` shuts out staff who are not enrolled, sessions
without the factor reach neither the admin nor the API, and ``enroll_totp`` issues the device."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from surveillance.access.second_factor import totp_enroll
from surveillance.models import AuditEntry


def code_now(device: TOTPDevice, steps_ahead: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time += steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    valid = {code_now(device, n) for n in (-1, 0, 1)}  # the device accepts one step of clock drift either way
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


def sign_in(client: Client, username: str, code: str = "", password: str = "correct-horse-battery"):
    return client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "otp_token": code, "next": "/admin/"},
    )


@pytest.fixture
def enrolled(coordinator_a) -> TOTPDevice:
    return totp_enroll(coordinator_a)


def test_it_asks_an_enrolled_user_for_the_code(enrolled):
    client = Client(REMOTE_ADDR="10.4.4.4")
    response = sign_in(client, "coordinator-a")
    assert response.status_code == 200 and b"Enter the authentication code" in response.content
    assert "_auth_user_id" not in client.session
    assert b"correct-horse-battery" not in response.content  # the password is not echoed back into the page


def test_it_refuses_a_wrong_code_as_a_failed_sign_in(enrolled):
    client = Client(REMOTE_ADDR="10.4.4.5")
    response = sign_in(client, "coordinator-a", wrong_code(enrolled))
    assert response.status_code == 200 and b"not valid" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEntry.objects.filter(action="login_failed", object_id="coordinator-a").count() == 1


def test_it_throttles_guessed_codes_like_guessed_passwords(enrolled, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # only the sign-in throttle under test
    client = Client(REMOTE_ADDR="10.4.4.6")
    for _ in range(settings.CARTWATCH["LOGIN_FAILURES_PER_USER"]):
        sign_in(client, "coordinator-a", wrong_code(enrolled))
    refused = sign_in(client, "coordinator-a", code_now(enrolled))
    assert b"Too many failed sign-in attempts" in refused.content
    assert "_auth_user_id" not in client.session


def test_it_signs_in_with_the_current_code_and_marks_the_session_verified(enrolled):
    client = Client(REMOTE_ADDR="10.4.4.7")
    assert sign_in(client, "coordinator-a", code_now(enrolled)).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get("/api/v1/patients").status_code == 200


def test_it_sends_a_session_without_the_factor_back_to_sign_in(enrolled, coordinator_a, login):
    client = login(coordinator_a)  # a session from before enrolment: a password at most
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    assert client.get("/api/v1/patients").status_code == 401


def test_it_lets_staff_without_a_device_sign_in_where_it_is_not_required(coordinator_a):
    assert settings.CARTWATCH_REQUIRE_2FA is False  # development and tests: the demo logins work as they are
    assert sign_in(Client(REMOTE_ADDR="10.4.4.8"), "coordinator-a").status_code == 302


def test_it_refuses_staff_without_a_device_when_required(coordinator_a, login, settings):
    settings.CARTWATCH_REQUIRE_2FA = True
    settings.CARTWATCH_FIRST_ENROLMENT_DAYS = 0  # past the first days, in which the user could enrol alone
    client = Client(REMOTE_ADDR="10.4.4.9")
    response = sign_in(client, "coordinator-a")
    assert response.status_code == 200 and b"Ask an administrator to enrol you" in response.content
    assert "_auth_user_id" not in client.session
    wrong_password = sign_in(Client(REMOTE_ADDR="10.4.4.9"), "coordinator-a", password="wrong-password")
    assert b"Ask an administrator" not in wrong_password.content  # nothing is told before the password is right
    assert login(coordinator_a).get("/api/v1/patients").status_code == 401


def test_it_enrols_a_user_and_prints_the_uri_and_secret_once(coordinator_a):
    out = io.StringIO()
    call_command("enroll_totp", "coordinator-a", stdout=out, stderr=io.StringIO())
    device = TOTPDevice.objects.get(user=coordinator_a)
    assert device.confirmed
    uri, secret = out.getvalue().splitlines()
    assert uri == device.config_url and uri.startswith("otpauth://totp/CAR-T%20Watch%3Acoordinator-a?secret=")
    assert secret.startswith("secret: ") and secret.removeprefix("secret: ") in uri
    with pytest.raises(CommandError, match="already has a device"):
        call_command("enroll_totp", "coordinator-a", stdout=io.StringIO(), stderr=io.StringIO())


def test_it_replaces_the_device_on_reset(enrolled, coordinator_a):
    call_command("enroll_totp", "coordinator-a", "--reset", stdout=io.StringIO(), stderr=io.StringIO())
    device = TOTPDevice.objects.get(user=coordinator_a)
    assert device.pk != enrolled.pk and device.key != enrolled.key


def test_it_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match=r"^no such user: nobody$"):
        call_command("enroll_totp", "nobody", stdout=io.StringIO(), stderr=io.StringIO())


def test_it_reads_the_requirement_as_a_strict_boolean(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.settings import env_flag

    monkeypatch.setenv("CARTWATCH_REQUIRE_2FA", "off")
    assert env_flag("CARTWATCH_REQUIRE_2FA", default=True) is False
    monkeypatch.setenv("CARTWATCH_REQUIRE_2FA", "ture")
    with pytest.raises(ImproperlyConfigured, match="must be true or false"):
        env_flag("CARTWATCH_REQUIRE_2FA", default=True)
    monkeypatch.delenv("CARTWATCH_REQUIRE_2FA")
    assert env_flag("CARTWATCH_REQUIRE_2FA", default=True) is True
