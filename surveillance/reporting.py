"""Recording a secondary malignancy opens its reporting steps (clinical reference section (e))."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction

from surveillance.models import AuditEntry, Infusion, MalignancyEvent, ReportingStep
from surveillance.models.events import ReportingStepKind


def malignancy_event_record(
    infusion: Infusion,
    *,
    diagnosis_date: dt.date,
    malignancy_type: str,
    by=None,
    confirmed: bool = True,
    description: str = "",
) -> MalignancyEvent:
    """Record the event and open one reporting step of each kind, due a configurable number of days later."""
    due = diagnosis_date + dt.timedelta(days=settings.CARTWATCH["REPORTING_STEP_DAYS"])
    with transaction.atomic():
        event = MalignancyEvent.objects.create(
            infusion=infusion,
            diagnosis_date=diagnosis_date,
            malignancy_type=malignancy_type,
            confirmed=confirmed,
            description=description,
            recorded_by=by,
        )
        ReportingStep.objects.bulk_create(
            ReportingStep(event=event, kind=kind, due_date=due) for kind in ReportingStepKind.values
        )
        AuditEntry.objects.create(
            actor=by,
            actor_label="" if by else "system",
            action="create",
            object_type="malignancy_event",
            object_id=str(event.pk),
            patient_id=infusion.patient_id,
            changes={"malignancy_type": malignancy_type, "diagnosis_date": diagnosis_date.isoformat()},
        )
    return event
