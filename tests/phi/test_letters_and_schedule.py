"""No patient data in the logs of the letters and the printed schedule, which show it on paper: the sentinel, whom
no message can reach, gets a letter task; a coordinator lists it, prints the letter, records it sent and prints
the sentinel's schedule; staff of another centre ask for both and are refused."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from surveillance.models import LetterTask, Patient
from surveillance.reminders import dispatch, outbox
from tests.phi.sentinel import FAMILY, leaks

pytestmark = pytest.mark.django_db
LIST = "/admin/surveillance/lettertask/"


def test_it_keeps_patient_data_out_of_the_logs_of_letters_and_the_printed_schedule(
    captured, sentinel, open_visit, smtp_settings, login, coordinator_a, physician_b
):
    Patient.objects.filter(pk=sentinel.pk).update(email="", phone="")
    now = timezone.now()
    outbox.visit_reminders_sync(open_visit(sentinel, timezone.localdate(now, sentinel.centre.tz)), now)
    dispatch.dispatch_run(now + dt.timedelta(seconds=1))
    task = LetterTask.objects.get(reminder__visit__infusion__patient=sentinel)
    schedule = reverse("admin:surveillance_patient_schedule", args=[sentinel.pk])

    coordinator = login(coordinator_a)
    assert FAMILY in coordinator.get(f"{LIST}?worklist=letters").content.decode()
    assert FAMILY in coordinator.get(f"{LIST}{task.pk}/letter/").content.decode()
    assert FAMILY in coordinator.get(schedule).content.decode()
    sent = coordinator.post(f"{LIST}?worklist=letters", {"action": "letter_sent", "_selected_action": [task.pk]})
    assert sent.status_code == 302
    task.refresh_from_db()
    assert task.done_at is not None
    assert coordinator.get(f"{LIST}{task.pk + 1000}/letter/").status_code == 404

    other_centre = login(physician_b)
    assert other_centre.get(f"{LIST}{task.pk}/letter/").status_code == 404
    assert other_centre.get(schedule).status_code in (403, 404)

    assert not leaks(captured.found())
