"""Every admin page answers within a bounded number of queries for a cohort of 1,000 patients."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from surveillance.admin.worklists import WORKLISTS
from surveillance.care import reporting
from surveillance.models import (
    FollowUpVisit,
    Infusion,
    MalignancyEvent,
    Patient,
    PatientRequest,
    Reminder,
    ReminderStatus,
    RiskFlag,
)
from surveillance.models.patients import FlagSource, LadderStage

pytestmark = pytest.mark.django_db
COHORT = 1000
MAX_QUERIES = 30


def _clone_cohort(template: Infusion, count: int) -> None:
    """``count`` more patients whose infusion, visits, reminders and flags copy the planned template's."""
    patient = template.patient
    patients = Patient.objects.bulk_create(
        Patient(
            centre_id=patient.centre_id,
            mrn=f"BULK{i:05d}",
            given_name="Kim",
            family_name=f"Bulk{i:05d}",
            birth_date=patient.birth_date,
            email=f"bulk{i}@example.org",
            ladder_stage=LadderStage.TRACING if i % 50 == 0 else LadderStage.ON_TRACK,
        )
        for i in range(count)
    )
    infusions = Infusion.objects.bulk_create(
        Infusion(
            patient=p,
            product_id=template.product_id,
            infusion_date=template.infusion_date,
            protocol_id=template.protocol_id,
        )
        for p in patients
    )
    RiskFlag.objects.bulk_create(
        RiskFlag(
            infusion=i, code="alkylator_exposure", source=FlagSource.TREATMENT_HISTORY, observed_on=i.infusion_date
        )
        for i in infusions[::10]
    )
    visits = list(FollowUpVisit.objects.filter(infusion=template))
    fields = [f.attname for f in FollowUpVisit._meta.concrete_fields if f.attname not in ("id", "infusion_id")]
    FollowUpVisit.objects.bulk_create(
        (
            FollowUpVisit(infusion_id=i.pk, **{name: getattr(v, name) for name in fields})
            for i in infusions
            for v in visits
        ),
        batch_size=2000,
    )
    reminders = list(Reminder.objects.filter(visit__infusion=template).select_related("visit"))
    by_key = {
        (v["infusion_id"], v["rule_code"], v["occurrence"]): v["pk"]
        for v in FollowUpVisit.objects.filter(rule_code__in={r.visit.rule_code for r in reminders}).values(
            "pk", "infusion_id", "rule_code", "occurrence"
        )
    }
    rfields = [
        f.attname for f in Reminder._meta.concrete_fields if f.attname not in ("id", "visit_id", "idempotency_key")
    ]
    Reminder.objects.bulk_create(
        (
            Reminder(
                visit_id=by_key[(i.pk, r.visit.rule_code, r.visit.occurrence)],
                idempotency_key=f"bulk:{i.pk}:{r.idempotency_key}",
                **{name: getattr(r, name) for name in rfields},
            )
            for i in infusions
            for r in reminders
        ),
        batch_size=2000,
    )
    Reminder.objects.filter(visit__infusion__in=infusions[::25]).update(status=ReminderStatus.FAILED)
    for infusion in infusions[::40]:
        reporting.malignancy_event_record(
            infusion, diagnosis_date=infusion.infusion_date + dt.timedelta(days=200), malignancy_type="solid"
        )
    open_visits = FollowUpVisit.objects.filter(infusion__in=infusions[::30], rule_code="M12")
    PatientRequest.objects.bulk_create(PatientRequest(visit=v, kind="confirm") for v in open_visits)


def test_it_answers_every_admin_page_in_bounded_queries_for_1000_patients(
    planned, centre_a, login, physician_a, auditor, standard_v2, django_assert_max_num_queries
):
    template = planned(centre_a, days_ago=300)
    _clone_cohort(template, COHORT - 1)
    assert Patient.objects.count() == COHORT
    patient = Patient.objects.get(mrn="BULK00040")
    visit = FollowUpVisit.objects.filter(infusion__patient=patient, status="scheduled").first()
    event = MalignancyEvent.objects.first()
    pages = [
        reverse("admin:index"),
        reverse("admin:dashboard"),
        reverse("admin:protocol_upgrade_list"),
        reverse("admin:protocol_upgrade", args=[standard_v2.pk]),
        reverse("admin:surveillance_patient_changelist"),
        reverse("admin:surveillance_patient_changelist") + "?q=Bulk0004",
        reverse("admin:surveillance_patient_change", args=[patient.pk]),
        reverse("admin:surveillance_patient_log_attempt", args=[patient.pk]),
        reverse("admin:surveillance_followupvisit_change", args=[visit.pk]),
        reverse("admin:surveillance_infusion_replan", args=[visit.infusion_id]),
        reverse("admin:surveillance_malignancyevent_change", args=[event.pk]),
        reverse("admin:surveillance_malignancyevent_changelist"),
        reverse("admin:surveillance_infusion_changelist"),
        reverse("admin:surveillance_riskflag_changelist"),
        reverse("admin:surveillance_reminder_changelist"),
        reverse("admin:surveillance_followupvisit_changelist"),
    ]
    pages += [worklist.url() for worklist in WORKLISTS]
    client = login(physician_a)
    for url in pages:
        with django_assert_max_num_queries(MAX_QUERIES, info=url):
            response = client.get(url)
        assert response.status_code == 200, url
    audit = login(auditor)
    with django_assert_max_num_queries(MAX_QUERIES):
        assert audit.get(reverse("admin:surveillance_auditentry_changelist")).status_code == 200
