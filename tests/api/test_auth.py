"""Tokens: stored hashed, scoped to centres, read-only or read-write, revocable; staff sessions; rate limits."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from surveillance.api.auth import api_token_create, api_token_revoke
from surveillance.models import ApiToken, AuditEntry
from tests.api.conftest import token_client


def test_it_stores_only_the_hash_of_the_key(token_a):
    token, raw = token_a
    stored = ApiToken.objects.get(pk=token.pk)
    assert raw not in {stored.name, stored.prefix, stored.key_sha256}
    assert len(stored.key_sha256) == 64 and raw.startswith(f"cwt_{stored.prefix}_")


def test_it_refuses_calls_without_a_token():
    response = APIClient().get("/api/v1/patients")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_an_unknown_token(db):
    response = token_client("cwt_deadbeef_not-a-key").get("/api/v1/patients")
    assert response.status_code == 401
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "code": "authentication_failed",
        "detail": "Invalid, revoked or expired token.",
    }


def test_it_refuses_a_revoked_token(token_a, api_a):
    assert api_a.get("/api/v1/patients").status_code == 200
    assert api_token_revoke(token_a[0]) is True
    assert api_a.get("/api/v1/patients").status_code == 401
    assert api_token_revoke(token_a[0]) is False  # once


def test_it_applies_a_change_of_a_tokens_centres_at_once(token_a, api_a, planned_a, centre_b):
    patient, _ = planned_a
    token = token_a[0]
    assert api_a.get(f"/api/v1/patients/{patient.pk}").status_code == 200
    token.centres.set([centre_b])
    assert api_a.get(f"/api/v1/patients/{patient.pk}").status_code == 404
    assert [c["code"] for c in api_a.get("/api/v1/centres").json()["results"]] == ["b"]
    token.centres.add(token.centres.model.objects.get(code="a"))
    assert api_a.get(f"/api/v1/patients/{patient.pk}").status_code == 200


def test_it_lets_a_read_only_token_read_but_not_write(readonly_a, centre_a):
    assert readonly_a.get("/api/v1/patients").status_code == 200
    response = readonly_a.post("/api/v1/patients", {"mrn": "X1"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_it_prints_a_working_key_from_the_command(centre_a):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "--centre", "a", "--read-only", "--name", "ehr-reader", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    token = ApiToken.objects.get(name="ehr-reader")
    assert token.read_only and list(token.centres.values_list("code", flat=True)) == ["a"]
    assert token_client(raw).get("/api/v1/centres").json()["results"][0]["code"] == "a"
    assert raw not in err.getvalue()


def test_it_revokes_from_the_command(token_a, api_a):
    call_command("revoke_api_token", token_a[0].name, stdout=io.StringIO())
    assert api_a.get("/api/v1/centres").status_code == 401


def test_it_records_the_token_as_the_actor_of_api_reads(api_a, planned_a, token_a):
    patient, _ = planned_a
    assert api_a.get(f"/api/v1/patients/{patient.pk}").status_code == 200
    entry = AuditEntry.objects.filter(action="api_get", patient_id=patient.pk).latest("pk")
    assert entry.actor is None and entry.actor_label == "token:epic-a"


def test_it_records_the_patients_a_list_page_showed(api_a, planned_a):
    patient, _ = planned_a
    assert api_a.get("/api/v1/visits").status_code == 200
    entry = AuditEntry.objects.filter(action="api_get", object_id="/api/v1/visits").latest("pk")
    assert entry.changes["patient_ids"] == [patient.pk]


def test_it_lets_staff_read_their_centre_by_session(staff_client, coordinator_a, planned_a):
    client = staff_client(coordinator_a)
    ids = [p["id"] for p in client.get("/api/v1/patients").json()["results"]]
    assert ids == [planned_a[0].pk]


def test_it_keeps_an_auditor_from_writing(staff_client, auditor, planned_a):
    client = staff_client(auditor)
    visit = planned_a[1].visits.filter(status="scheduled").first()
    response = client.post(f"/api/v1/visits/{visit.pk}/cancel", {"reason": "x"}, format="json")
    assert response.status_code == 403


def test_it_records_a_staff_members_api_read_with_the_user_and_address(staff_client, coordinator_a, planned_a):
    patient, _ = planned_a
    response = staff_client(coordinator_a).get(f"/api/v1/patients/{patient.pk}", REMOTE_ADDR="192.0.2.7")
    assert response.status_code == 200
    entry = AuditEntry.objects.filter(action="api_get", patient_id=patient.pk).latest("pk")
    assert (entry.actor, entry.actor_label, entry.remote_addr) == (coordinator_a, "", "192.0.2.7")
    assert entry.changes == {"status": 200, "path": f"/api/v1/patients/{patient.pk}"}


def test_it_refuses_an_expired_token(centre_a):
    token, raw = api_token_create("night-feed", [centre_a], expires_at=timezone.now() + dt.timedelta(hours=1))
    api = token_client(raw)
    assert api.get("/api/v1/centres").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = api.get("/api/v1/centres")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid, revoked or expired token."


def test_it_audits_tokens_issued_and_revoked_from_the_commands(centre_a):
    call_command("create_api_token", "--centre", "a", "--name", "cli-feed", stdout=io.StringIO(), stderr=io.StringIO())
    call_command("revoke_api_token", "cli-feed", stdout=io.StringIO())
    entries = AuditEntry.objects.filter(object_type="apitoken").order_by("pk")
    assert [(e.action, e.actor_label) for e in entries] == [("token_issue", "system"), ("token_revoke", "system")]


def test_it_issues_a_token_until_a_day_from_the_command(centre_a):
    last_day = timezone.localdate(timezone.now(), centre_a.tz) + dt.timedelta(days=10)
    out = io.StringIO()
    call_command(
        "create_api_token",
        "--centre",
        "a",
        "--name",
        "until-feed",
        "--expires-on",
        last_day.isoformat(),
        stdout=out,
        stderr=io.StringIO(),
    )
    token = ApiToken.objects.get(name="until-feed")
    assert token.expires_at == dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=centre_a.tz)
    assert token_client(out.getvalue().strip()).get("/api/v1/centres").status_code == 200
    with pytest.raises(CommandError, match="has passed"):
        call_command("create_api_token", "--centre", "a", "--expires-on", "2020-01-01", stderr=io.StringIO())
