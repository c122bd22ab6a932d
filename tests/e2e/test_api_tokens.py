"""API tokens in a real browser: the administrator issues a token for centre A until a chosen day, copies the key
shown once, the key works against the running service, and revoking it from the list stops it at once."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

import pytest
from django.utils import timezone

from surveillance.models import ApiToken
from tests.e2e.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _api_status(base: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{base}/api/v1/centres", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_it_issues_a_token_shows_its_key_once_and_revokes_it(page, live_server, sign_in, administrator, centre_a):
    sign_in(page, "administrator")
    page.goto(f"{live_server.url}/admin/surveillance/apitoken/add/")
    until = timezone.localdate(timezone.now(), centre_a.tz) + dt.timedelta(days=30)
    page.fill("#id_name", "epic-browser")
    page.check(f"input[name=centres][value='{centre_a.pk}']")
    page.fill("#id_expires_on", until.isoformat())
    page.click("input[type=submit][value='Issue the token']")
    key = page.text_content("#api-token-key").strip()
    screenshot(page, "api-token-issued")
    assert key.startswith("cwt_") and "not shown again" in page.content()

    status, body = _api_status(live_server.url, key)
    assert status == 200 and [c["code"] for c in body["results"]] == ["a"]

    page.click("text=Back to the API tokens")
    page.wait_for_selector("#result_list")
    token = ApiToken.objects.get(name="epic-browser")
    assert key not in page.content() and token.prefix in page.content()
    page.check(f"input[name=_selected_action][value='{token.pk}']")
    page.select_option("select[name=action]", "revoke")
    page.click("button[name=index]")
    page.wait_for_selector("text=1 token(s) revoked")
    assert _api_status(live_server.url, key)[0] == 401
