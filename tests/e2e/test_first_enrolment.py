"""A new coordinator's first day in a real browser, where the second factor is required: the password leads to the
enrolment page, the key shown there feeds an authenticator (computed here), and its code opens the worklists."""

from __future__ import annotations

from base64 import b32decode

import pytest
from django_otp.oath import TOTP

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _code_from_key(secret: str) -> str:
    """What an authenticator app shows for the typed-in key (RFC 6238 defaults, as django-otp's devices use)."""
    key = b32decode(secret + "=" * (-len(secret) % 8))
    return f"{TOTP(key).token():06d}"


def test_it_takes_a_new_coordinator_from_password_to_worklists(page, live_server, coordinator_a, settings):
    settings.CARTWATCH_REQUIRE_2FA = True
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "coordinator-a")
    page.fill("#id_password", "correct-horse-battery")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/second-factor/")
    assert page.locator(".cw-qr svg").count() == 1

    page.fill("#id_otp_token", _code_from_key(page.inner_text("#totp-secret")))
    page.click("#enrolment-form input[type=submit]")
    assert page.locator("#recovery-codes li").count() == 10
    page.click("#recovery-codes a.button")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator('[data-worklist="overdue"]').count() == 1
