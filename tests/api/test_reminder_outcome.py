"""The reminder API shows what the mail server last answered (code and error), read-only and without PHI."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import Reminder
from surveillance.reminders import dispatch
from tests.reminders.conftest import smtp_server, smtp_settings  # noqa: F401

pytestmark = pytest.mark.django_db


def test_it_shows_the_last_smtp_code_and_error_of_a_refused_reminder(api_a, planned_a, smtp_settings):  # noqa: F811
    patient = planned_a[0]
    smtp_settings.answers.append(f"550 5.1.1 <{patient.email}> mailbox unavailable")  # servers quote the address
    reminder = Reminder.objects.filter(visit__infusion=planned_a[1], audience="patient").first()
    Reminder.objects.filter(pk=reminder.pk).update(send_after=timezone.now(), next_attempt_at=timezone.now())
    Reminder.objects.exclude(pk=reminder.pk).update(next_attempt_at=timezone.now() + dt.timedelta(days=400))
    dispatch.dispatch_run()
    body = api_a.get(f"/api/v1/reminders/{reminder.pk}").json()
    assert body["status"] == "failed" and body["last_smtp_code"] == 550
    assert "mailbox unavailable" in body["last_error"] and patient.email not in body["last_error"]
    assert api_a.patch(f"/api/v1/reminders/{reminder.pk}", {"last_error": ""}, format="json").status_code == 405
