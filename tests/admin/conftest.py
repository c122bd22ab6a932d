"""Fixtures of the clinician admin: planned patients relative to today, logged-in clients, a large cohort."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from surveillance.care import planning
from surveillance.models import FollowUpVisit, Protocol, ProtocolRule, ProtocolStatus, VisitStatus
from tests.reminders.conftest import open_visit, smtp_server, smtp_settings  # noqa: F401  (the letter tasks' outbox)


@pytest.fixture
def today(centre_a) -> dt.date:
    """Today at centre A (the worklists' day for its staff)."""
    return timezone.localdate(timezone.now(), centre_a.tz)


@pytest.fixture
def login():
    def make(user) -> Client:
        client = Client(REMOTE_ADDR="10.1.2.3")
        client.force_login(user)
        return client

    return make


@pytest.fixture
def planned(make_patient, make_infusion):
    """A patient with one infusion ``days_ago`` days before today, planned by the real planner."""

    def make(centre, days_ago: int = 95, flags=(), **patient_fields):
        patient = make_patient(centre, **patient_fields)
        day = timezone.localdate(timezone.now(), centre.tz) - dt.timedelta(days=days_ago)
        infusion = make_infusion(patient, infusion_date=day, flags=flags)
        planning.infusion_plan(infusion)
        infusion.refresh_from_db()
        return infusion

    return make


def visit_set(visit: FollowUpVisit, *, due: dt.date, before: int = 5, after: int = 20) -> FollowUpVisit:
    """Place a scheduled visit on the calendar for a test (setup only: the app never writes dates this way)."""
    FollowUpVisit.objects.filter(pk=visit.pk).update(
        due_date=due,
        window_start=due - dt.timedelta(days=before),
        window_end=due + dt.timedelta(days=after),
        status=VisitStatus.SCHEDULED,
        status_reason="",
    )
    visit.refresh_from_db()
    return visit


def scheduled(infusion, rule_code: str, occurrence: int = 1) -> FollowUpVisit:
    return FollowUpVisit.objects.get(infusion=infusion, rule_code=rule_code, occurrence=occurrence)


@pytest.fixture
def standard_v2(db) -> Protocol:
    """A draft next version of the standard protocol: M12's window widened, M6 dropped, a day-270 check added."""
    v1 = Protocol.objects.current("standard")
    v2 = Protocol.objects.create(
        code=v1.code,
        version=v1.version + 1,
        name=f"{v1.name} (revised)",
        variant=v1.variant,
        status=ProtocolStatus.DRAFT,
        content_hash=uuid.uuid4().hex,
    )
    rules = []
    for rule in v1.rules.all():
        if rule.code == "M6":
            continue
        rule.pk, rule.protocol = None, v2
        if rule.code == "M12":
            rule.window_before_days += 10
        rules.append(rule)
    extra = ProtocolRule(
        protocol=v2,
        position=999,
        code="D270",
        label="Nine-month blood count",
        kind="lab",
        offset_amount=270,
        offset_unit="day",
        window_before_days=14,
        window_after_days=14,
        assessments=[{"code": "cbc_diff", "label": "CBC with differential"}],
        reminders={},
        source="test",
    )
    ProtocolRule.objects.bulk_create([*rules, extra])
    return v2
