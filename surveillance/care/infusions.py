"""Recording and correcting an infusion: the one write path the admin, the API, the importer and the demo share.

An infusion anchors years of visits, so the dates it is given must agree with what is known of the patient: it
cannot precede the birth date, follow a recorded death, or be added for a patient whose follow-up is closed. Those
rules are checked here, once (``infusion_check``), and every entry point turns the refusal (``InfusionRefused``,
carrying the field it concerns) into its own answer: a 400, a form error, an import issue. Recording then
supersedes the patient's earlier infusions (a re-infusion restarts the schedule) and plans the visits, in one
transaction and always in that order; correcting re-plans after the new date or product is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from surveillance.care import planning
from surveillance.care.risk_flags import FlagFacts, risk_flag_write
from surveillance.models import Infusion, Patient, PatientStatus

#: Infusion fields whose change moves the schedule: a correction of either re-plans the visits.
PLANNED_FIELDS = ("infusion_date", "product")


class InfusionRefused(ValueError):
    """The infusion contradicts what is recorded of the patient; ``field_name`` says which input is wrong.

    The message never repeats the patient's dates (they are protected health information)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name = field_name
        self.message = message


def infusion_check(patient: Patient, infusion_date: dt.date, *, correcting: bool = False) -> None:
    """Refuse an infusion dated before the patient's birth or after their recorded death, or a new one for a
    patient whose follow-up is closed (a correction of a closed patient's infusion keeps only the date rules)."""
    if patient.birth_date is not None and infusion_date < patient.birth_date:
        raise InfusionRefused("infusion_date", "is before the patient's birth date")
    if patient.status == PatientStatus.DECEASED and patient.status_date and infusion_date > patient.status_date:
        raise InfusionRefused("infusion_date", "is after the patient's recorded date of death")
    if not correcting and not patient.under_follow_up:
        raise InfusionRefused(
            "patient", f"the patient's follow-up is closed ({PatientStatus(patient.status).label.lower()})"
        )


def patient_birth_date_check(patient: Patient, birth_date: dt.date | None) -> None:
    """The same rule seen from the patient: a (corrected) birth date after one of their infusions is refused, as
    every later re-plan of that infusion would contradict it."""
    if birth_date and patient.pk and patient.infusions.filter(infusion_date__lt=birth_date).exists():
        raise InfusionRefused("birth_date", "is after the date of one of the patient's infusions")


def patient_death_date_check(patient: Patient, died_on: dt.date) -> None:
    """And from the patient's death: a date of death before one of their infusions is refused."""
    if patient.infusions.filter(infusion_date__gt=died_on).exists():
        raise InfusionRefused("status_date", "is before the date of one of the patient's infusions")


def _patient_locked(patient_id: int) -> Patient:
    """The patient row, locked until the transaction ends, so that a closure cannot slip between check and write."""
    return Patient.objects.select_for_update().select_related("centre").get(pk=patient_id)


def infusion_record(
    infusion: Infusion,
    *,
    by=None,
    reason: str,
    risk_flags: Iterable[FlagFacts] = (),
    now: dt.datetime | None = None,
) -> planning.PlanDiff:
    """Check, store and plan a new (unsaved) infusion, with the risk flags known at the time; returns its plan.

    A later infusion of the patient already recorded supersedes this one (it is history and gets no visits);
    earlier ones are superseded by it and re-planned empty. Raises ``InfusionRefused`` before writing anything.
    """
    now = now or timezone.now()
    with transaction.atomic():
        patient = _patient_locked(infusion.patient_id)
        infusion_check(patient, infusion.infusion_date)
        infusion.patient = patient
        infusion.superseded_by = (
            Infusion.objects.filter(
                patient=patient, infusion_date__gt=infusion.infusion_date, superseded_by__isnull=True
            )
            .order_by("infusion_date", "pk")
            .first()
        )
        infusion.save(force_insert=True)
        for facts in risk_flags:
            risk_flag_write(infusion, facts, by=by)
        planning.infusion_supersede_earlier(infusion, by=by)
        diff = planning.infusion_plan(infusion, by=by, reason=reason, now=now)
        infusion.refresh_from_db(fields=["protocol", "updated_at"])  # as planned, for the caller to show
    return diff


def infusion_correct(
    infusion: Infusion,
    *,
    by=None,
    reason: str,
    replan: bool = False,
    confirm: str | None = None,
    now: dt.datetime | None = None,
    **values,
) -> planning.PlanDiff | None:
    """Write corrected values of a stored infusion and, when its date or product changed (or ``replan``), re-plan
    it: every visit not yet completed moves with it (a missed one too when the date changed: it was missed on a
    wrong date). Returns the re-plan, or None when there was none
    (nothing that moves the schedule changed, or the patient's follow-up is closed).

    ``confirm`` is the fingerprint of the preview a person saw (``planning.PlanChanged`` if it is out of date).
    Raises ``InfusionRefused`` before writing anything.
    """
    date_corrected = "infusion_date" in values and values["infusion_date"] != infusion.infusion_date
    with transaction.atomic():
        moved = infusion_values_write(infusion, values, now=now)
        if not (moved or replan) or not infusion.patient.under_follow_up:
            return None
        return planning.infusion_plan(
            infusion, by=by, reason=reason, confirm=confirm, date_corrected=date_corrected, now=now
        )


def infusion_values_write(infusion: Infusion, values: dict, *, now: dt.datetime | None = None) -> bool:
    """Check and write new values of a stored infusion (inside the caller's transaction), without re-planning;
    returns whether a value that moves the schedule changed. A preview writes with it and rolls back."""
    patient = _patient_locked(infusion.patient_id)
    infusion_check(patient, values.get("infusion_date", infusion.infusion_date), correcting=True)
    infusion.patient = patient
    changed = [name for name, value in values.items() if getattr(infusion, name) != value]
    for name in changed:
        setattr(infusion, name, values[name])
    if changed:
        infusion.updated_at = now or timezone.now()
        Infusion.objects.filter(pk=infusion.pk).update(
            **{name: values[name] for name in changed}, updated_at=infusion.updated_at
        )
    return any(name in PLANNED_FIELDS for name in changed)
