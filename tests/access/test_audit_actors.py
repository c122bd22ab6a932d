"""Who acted is named from one vocabulary (``AuditActor``): a staff user's row, a system task, an EHR import, a
patient following a signed link, an API token; whichever flow writes the entry."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from surveillance.access.audit import audit_actor_label
from surveillance.api.auth import api_token_create
from surveillance.care import lifecycle, planning
from surveillance.models import AuditEntry, VisitStatus
from surveillance.models.audit import AuditActor
from surveillance.reminders import messages, sweep
from tests.api.conftest import token_client
from tests.reminders.conftest import open_visit  # noqa: F401

pytestmark = pytest.mark.django_db
UTC = dt.UTC
DAY = (dt.date.today() - dt.timedelta(days=20)).isoformat()
CSV = (
    "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"
    f"C-1,Ana,Lima,1970-01-02,f,ana@example.org,,es,Yescarta,{DAY},L1\n"
)


def test_it_names_a_staff_user_by_the_user_row_and_no_label(coordinator_a, centre_a, make_patient, open_visit):  # noqa: F811
    visit = open_visit(make_patient(centre_a), dt.date.today())
    lifecycle.visit_cancel(visit, reason="moved away", by=coordinator_a)
    entry = AuditEntry.objects.get(action="cancelled")
    assert (entry.actor, entry.actor_label) == (coordinator_a, "")


def test_it_names_the_planner_and_the_sweep_as_the_same_system_actor(
    centre_a,
    make_patient,
    make_infusion,
    open_visit,  # noqa: F811
):
    planning.infusion_plan(make_infusion(make_patient(centre_a), infusion_date=dt.date(2026, 1, 20)))
    visit = open_visit(make_patient(centre_a), dt.date(2026, 10, 1))
    sweep.daily_sweep(dt.datetime(2026, 10, 30, 14, tzinfo=UTC))
    visit.refresh_from_db()
    assert visit.status == VisitStatus.MISSED
    labels = dict(
        AuditEntry.objects.filter(action__in=("plan", "missed", "ladder")).values_list("action", "actor_label")
    )
    assert labels == {"plan": AuditActor.SYSTEM, "missed": AuditActor.SYSTEM, "ladder": AuditActor.SYSTEM}


def test_it_names_an_import_from_the_command_line_as_the_ehr_import(centre_a, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    call_command("import_ehr", str(path), "--centre", "a", stdout=io.StringIO())
    entry = AuditEntry.objects.get(action="plan")
    assert (entry.actor, entry.actor_label) == (None, AuditActor.EHR_IMPORT)


def test_it_names_the_api_token_that_ran_an_import(centre_a):
    _, raw = api_token_create("epic-a", [centre_a])
    response = token_client(raw).generic("POST", "/api/v1/import/csv", CSV.encode(), content_type="text/csv")
    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get(action="plan")
    assert entry.actor_label == audit_actor_label(AuditActor.API_TOKEN, "epic-a") == "token:epic-a"


def test_it_names_a_patient_following_a_signed_link(client, centre_a, make_patient, open_visit):  # noqa: F811
    patient = make_patient(centre_a)
    open_visit(patient, dt.date.today())
    response = client.post(messages.unsubscribe_url(patient).removeprefix("http://127.0.0.1:8000"))
    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="unsubscribe")
    assert (entry.actor, entry.actor_label) == (None, AuditActor.PATIENT_LINK)


def test_it_names_a_failed_sign_in_as_anonymous(client, coordinator_a):
    client.post(reverse("admin:login"), {"username": "coordinator_a", "password": "wrong"})
    entry = AuditEntry.objects.get(action="login_failed")
    assert (entry.actor, entry.actor_label) == (None, AuditActor.ANONYMOUS)
