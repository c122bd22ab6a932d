"""Recording a secondary malignancy opens its reporting steps (clinical reference section (e))."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.integrations import webhooks
from surveillance.models import Infusion, MalignancyEvent, ReportingStep
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
        audit_write(
            "create",
            by=by,
            object_type="malignancy_event",
            object_id=event.pk,
            patient_id=infusion.patient_id,
            changes={"malignancy_type": malignancy_type, "diagnosis_date": diagnosis_date.isoformat()},
        )
        webhooks.malignancy_recorded_emit(event)
    return event


class StepError(Exception):
    """A reporting step cannot be closed as asked (already closed by someone, or a required reference missing)."""


def reporting_step_complete(
    step: ReportingStep, *, by, reference: str = "", notes: str = "", now: dt.datetime | None = None
) -> ReportingStep:
    """Close a step once, by compare-and-set, with who and when; a MedWatch report needs its reference."""
    if by is None:
        raise StepError("a reporting step is closed by a person")
    if step.kind == ReportingStepKind.MEDWATCH and not reference.strip():
        raise StepError("the MedWatch report number is required")
    now = now or timezone.now()
    with transaction.atomic():
        updated = ReportingStep.objects.filter(pk=step.pk, completed_at__isnull=True).update(
            completed_at=now, completed_by=by, reference=reference.strip()[:128], notes=notes.strip()[:500]
        )
        if updated != 1:
            raise StepError(f"reporting step {step.pk} is already closed")
        step.refresh_from_db()
        audit_write(
            "step_completed",
            by=by,
            object_type="reporting_step",
            object_id=step.pk,
            patient_id=step.event.infusion.patient_id,
            changes={"kind": step.kind, "event": step.event_id, "reference": step.reference},
        )
    return step


def reporting_steps_escalated(steps, today: dt.date):
    """Open steps left past their due date (the due date is diagnosis + ``REPORTING_STEP_DAYS``)."""
    return steps.filter(completed_at__isnull=True, due_date__lt=today)
