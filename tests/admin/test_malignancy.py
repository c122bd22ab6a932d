"""Second-malignancy workflow: recording opens the reporting steps with due dates, the manufacturer contact is
shown, steps are closed with who/when/reference, and steps left open past due are escalated."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.urls import reverse

from surveillance.care import reporting
from surveillance.models import AuditEntry, CarTProduct, MalignancyEvent, ReportingStep

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def test_it_opens_the_four_reporting_steps_when_a_physician_records_an_event(
    login, physician_a, planned, centre_a, today
):
    infusion = planned(centre_a, days_ago=300)
    client = login(physician_a)
    add = reverse("admin:surveillance_malignancyevent_add")
    assert client.get(add, {"infusion": infusion.pk}).status_code == 200
    response = client.post(
        add,
        {
            "infusion": infusion.pk,
            "diagnosis_date": (today - 2 * DAY).isoformat(),
            "malignancy_type": "t_cell_lymphoma",
            "confirmed": "on",
            "description": "CD4+ T-cell lymphoma, skin",
            "transgene_status": "kit_requested",
        },
    )
    assert response.status_code == 302
    event = MalignancyEvent.objects.get(infusion=infusion)
    assert (event.recorded_by, event.transgene_status) == (physician_a, "kit_requested")
    due = today - 2 * DAY + dt.timedelta(days=settings.CARTWATCH["REPORTING_STEP_DAYS"])
    steps = {s.kind: s.due_date for s in event.reporting_steps.all()}
    assert steps == {"manufacturer": due, "medwatch": due, "registry": due, "sample_shipment": due}


def test_it_refuses_a_diagnosis_before_the_infusion(login, physician_a, planned, centre_a):
    infusion = planned(centre_a, days_ago=300)
    response = login(physician_a).post(
        reverse("admin:surveillance_malignancyevent_add"),
        {
            "infusion": infusion.pk,
            "diagnosis_date": (infusion.infusion_date - DAY).isoformat(),
            "malignancy_type": "solid",
            "transgene_status": "not_requested",
        },
    )
    assert response.status_code == 200 and "diagnosis_date" in response.context["adminform"].form.errors
    assert not MalignancyEvent.objects.exists()


def test_it_shows_the_manufacturer_contact_and_escalates_steps_past_due(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=300)
    CarTProduct.objects.filter(pk=infusion.product_id).update(
        safety_contact_phone="1-800-555-0100", safety_contact_note="Ask for the CAR-T safety desk"
    )
    event = reporting.malignancy_event_record(infusion, diagnosis_date=today - 10 * DAY, malignancy_type="mds_aml")
    page = login(physician_a).get(reverse("admin:surveillance_malignancyevent_change", args=[event.pk]))
    html = page.content.decode()
    assert "1-800-555-0100" in html and "Ask for the CAR-T safety desk" in html
    assert infusion.product.manufacturer in html
    assert all(step.escalated for step in page.context["steps"])


def test_it_closes_steps_with_who_when_and_the_medwatch_reference(login, physician_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=300)
    event = reporting.malignancy_event_record(infusion, diagnosis_date=today - DAY, malignancy_type="solid")
    client = login(physician_a)
    medwatch = event.reporting_steps.get(kind="medwatch")
    url = reverse("admin:surveillance_malignancyevent_step_complete", args=[event.pk, medwatch.pk])
    prefix = f"step{medwatch.pk}"
    client.post(url, {f"{prefix}-reference": "", f"{prefix}-notes": "filed"})
    medwatch.refresh_from_db()
    assert medwatch.completed_at is None  # a MedWatch report needs its number
    client.post(url, {f"{prefix}-reference": "MW-5012345", f"{prefix}-notes": "filed online"})
    medwatch.refresh_from_db()
    assert (medwatch.completed_by, medwatch.reference) == (physician_a, "MW-5012345")
    assert medwatch.completed_at is not None
    entry = AuditEntry.objects.get(action="step_completed", object_id=str(medwatch.pk))
    assert entry.actor == physician_a and entry.patient_id == infusion.patient_id
    again = client.post(url, {f"{prefix}-reference": "MW-other"})
    assert again.status_code == 302
    medwatch.refresh_from_db()
    assert medwatch.reference == "MW-5012345"  # closed once, never overwritten
    page = client.get(reverse("admin:surveillance_malignancyevent_change", args=[event.pk]))
    assert "MW-5012345" in page.content.decode()
    assert ReportingStep.objects.filter(event=event, completed_at__isnull=True).count() == 3


def test_it_lets_a_coordinator_see_but_not_close_steps(login, coordinator_a, planned, centre_a, today):
    infusion = planned(centre_a, days_ago=300)
    event = reporting.malignancy_event_record(infusion, diagnosis_date=today - DAY, malignancy_type="solid")
    step = event.reporting_steps.first()
    client = login(coordinator_a)
    assert client.get(reverse("admin:surveillance_malignancyevent_change", args=[event.pk])).status_code == 200
    url = reverse("admin:surveillance_malignancyevent_step_complete", args=[event.pk, step.pk])
    assert client.post(url, {f"step{step.pk}-reference": "x"}).status_code == 403
