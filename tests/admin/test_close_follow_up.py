"""Closing a patient's follow-up in the admin (a death, a withdrawal, a transfer) goes through the lifecycle: the
visits ahead are cancelled, reminders stop, and a new infusion is refused from then on."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse

from surveillance.models import AuditEntry, FollowUpVisit, Patient, Reminder, ReminderStatus, VisitStatus

DAY = dt.timedelta(days=1)


def test_it_records_a_death_and_cancels_the_visits_ahead(login, coordinator_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=120)
    died = today - 80 * DAY
    kept = set(
        FollowUpVisit.objects.filter(
            infusion=infusion, status=VisitStatus.UNRECORDED, window_start__lte=died
        ).values_list("pk", flat=True)
    )
    assert kept and infusion.visits.filter(status=VisitStatus.SCHEDULED).exists()
    client = login(coordinator_a)
    page = client.get(reverse("admin:surveillance_patient_change", args=[infusion.patient_id]))
    url = reverse("admin:surveillance_patient_close", args=[infusion.patient_id])
    assert url.encode() in page.content
    response = client.post(url, {"status": "deceased", "on": died.isoformat(), "reason": "Letter from the GP"})
    assert response.status_code == 302
    patient = Patient.objects.get()
    assert (patient.status, patient.status_date) == ("deceased", died)
    assert not infusion.visits.filter(status=VisitStatus.SCHEDULED).exists()
    assert set(infusion.visits.filter(status=VisitStatus.UNRECORDED).values_list("pk", flat=True)) == kept
    assert not Reminder.objects.filter(visit__infusion=infusion, status=ReminderStatus.PENDING).exists()
    assert AuditEntry.objects.get(action="close").actor == coordinator_a


def test_it_refuses_a_future_date_and_a_second_closure(login, coordinator_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=30)
    client = login(coordinator_a)
    url = reverse("admin:surveillance_patient_close", args=[infusion.patient_id])
    future = client.post(url, {"status": "withdrawn", "on": (today + DAY).isoformat(), "reason": "Asked"})
    assert future.status_code == 400 and "on" in future.context["form"].errors
    assert client.post(url, {"status": "withdrawn", "on": today.isoformat(), "reason": "Asked"}).status_code == 302
    again = client.post(url, {"status": "transferred", "on": today.isoformat(), "reason": "Moved"})
    assert again.status_code == 400 and again.context["form"].non_field_errors()
    assert Patient.objects.get().status == "withdrawn"


def test_it_refuses_a_date_of_death_before_an_infusion(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=30)
    url = reverse("admin:surveillance_patient_close", args=[infusion.patient_id])
    before = (infusion.infusion_date - DAY).isoformat()
    response = login(physician_a).post(url, {"status": "deceased", "on": before, "reason": "Registry"})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "on": ["The date of death is before the date of one of the patient's infusions."]
    }
    assert Patient.objects.get().status == "active"


def test_it_lets_no_auditor_close_a_follow_up(login, auditor, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=30)
    url = reverse("admin:surveillance_patient_close", args=[infusion.patient_id])
    response = login(auditor).post(url, {"status": "deceased", "on": today.isoformat(), "reason": "x"})
    assert response.status_code == 403
    assert Patient.objects.get().status == "active"
