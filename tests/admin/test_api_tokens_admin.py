"""API tokens from the admin: an administrator issues one (its key shown once, only its hash kept) for chosen
centres and until a chosen day, and revokes it; each action is audited; clinical roles never see the page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from surveillance.api.auth import api_token_create
from surveillance.models import ApiToken, AuditEntry
from surveillance.models.integrations import api_key_digest
from tests.api.conftest import token_client

pytestmark = pytest.mark.django_db
ADD = reverse("admin:surveillance_apitoken_add")
LIST = reverse("admin:surveillance_apitoken_changelist")


def _issue(client, centre, **fields):
    data = {"name": "epic-interface-a", "centres": [centre.pk], "expires_on": "", **fields}
    return client.post(ADD, data)


def test_it_issues_a_token_whose_key_is_shown_once_and_works(login, administrator, centre_a, centre_b):
    client = login(administrator)
    until = timezone.localdate(timezone.now(), centre_a.tz) + dt.timedelta(days=90)
    response = _issue(client, centre_a, read_only="on", expires_on=until.isoformat())

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key = response.context["key"]
    assert key.startswith("cwt_") and key in response.content.decode()
    token = ApiToken.objects.get(name="epic-interface-a")
    assert token.key_sha256 == api_key_digest(key) and key not in (token.prefix, token.name)
    assert token.read_only and list(token.centres.values_list("code", flat=True)) == ["a"]
    assert token.expires_at == dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=centre_a.tz)
    api = token_client(key)
    assert [c["code"] for c in api.get("/api/v1/centres").json()["results"]] == ["a"]
    assert api.post("/api/v1/patients", {"mrn": "X1"}, format="json").status_code == 403  # read-only

    entry = AuditEntry.objects.get(action="token_issue")
    assert entry.actor == administrator and entry.object_id == str(token.pk)
    assert entry.changes["centres"] == ["a"] and entry.changes["read_only"] is True
    assert key not in str(entry.changes)
    page = client.get(reverse("admin:surveillance_apitoken_change", args=[token.pk])).content.decode()
    listing = client.get(LIST).content.decode()
    assert token.prefix in page and token.prefix in listing
    assert key not in page and key not in listing


def test_it_refuses_a_past_expiry_or_no_centre_and_saves_nothing(login, administrator, centre_a):
    client = login(administrator)
    yesterday = timezone.localdate(timezone.now(), centre_a.tz) - dt.timedelta(days=1)
    response = _issue(client, centre_a, expires_on=yesterday.isoformat())
    assert response.status_code == 200 and "Choose today or a later day." in response.content.decode()
    response = client.post(ADD, {"name": "no-centre", "expires_on": ""})
    assert response.status_code == 200 and response.context["form"].errors["centres"]
    assert not ApiToken.objects.exists() and not AuditEntry.objects.filter(action="token_issue").exists()


def test_it_revokes_the_chosen_tokens_at_once_and_audits_it(login, administrator, centre_a):
    token, key = api_token_create("epic-a", [centre_a])
    api = token_client(key)
    assert api.get("/api/v1/centres").status_code == 200
    response = login(administrator).post(LIST, {"action": "revoke", "_selected_action": [token.pk]}, follow=True)
    assert "1 token(s) revoked" in response.content.decode()
    assert api.get("/api/v1/centres").status_code == 401
    token.refresh_from_db()
    assert token.revoked_at is not None
    entry = AuditEntry.objects.get(action="token_revoke")
    assert entry.actor == administrator and entry.changes == {"name": "epic-a", "prefix": token.prefix}


def test_it_shows_an_expired_token_as_expired(login, administrator, centre_a):
    token, _ = api_token_create("old-feed", [centre_a], expires_at=timezone.now() + dt.timedelta(seconds=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    listing = login(administrator).get(LIST)
    assert listing.context["cl"].result_list[0].pk == token.pk
    assert ">expired<" in listing.content.decode()


@pytest.mark.parametrize("persona", ["coordinator_a", "physician_b", "auditor"])
def test_it_keeps_clinical_roles_off_the_page(request, login, persona, centre_a):
    token, _ = api_token_create("epic-a", [centre_a])
    client = login(request.getfixturevalue(persona))
    for url in (LIST, ADD, reverse("admin:surveillance_apitoken_change", args=[token.pk])):
        assert client.get(url).status_code == 403
    assert client.post(ADD, {"name": "sneaky", "centres": [centre_a.pk]}).status_code == 403
    assert client.post(LIST, {"action": "revoke", "_selected_action": [token.pk]}).status_code == 403
    assert ApiToken.objects.get().revoked_at is None and ApiToken.objects.count() == 1
    assert LIST not in client.get(reverse("admin:index")).content.decode()
