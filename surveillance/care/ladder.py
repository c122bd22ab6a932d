"""The lost-to-follow-up ladder: a patient's stage follows their consecutive missed visits.

1 missed visit: overdue, 2: tracing, 3 or more: lost to follow-up (still followed, still reminded); a recorded
visit brings them back down. The stage moves in the transition that changes it (``care.lifecycle`` calls
``patient_ladder_update`` whenever a visit becomes, or stops being, completed or missed), so the daily sweep never
re-reads patients nothing happened to. Deceased, withdrawn and transferred patients are never on the ladder.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.care import reasons
from surveillance.integrations import webhooks
from surveillance.models import FollowUpVisit, Patient, PatientStatus, VisitStatus
from surveillance.models.patients import LadderStage

logger = logging.getLogger("surveillance.care.ladder")

#: Consecutive missed visits -> ladder stage (checked from the top).
LADDER = ((3, LadderStage.LOST), (2, LadderStage.TRACING), (1, LadderStage.OVERDUE), (0, LadderStage.ON_TRACK))


def consecutive_missed(patient: Patient) -> int:
    """Missed visits since the patient's last completed one (over their current infusions)."""
    settled = (
        FollowUpVisit.objects.filter(
            infusion__patient=patient,
            infusion__superseded_by__isnull=True,
            status__in=(VisitStatus.COMPLETED, VisitStatus.MISSED),
        )
        .order_by("-due_date", "-pk")
        .values_list("status", flat=True)
    )
    count = 0
    for status in settled:  # one fetch: ``iterator()`` on PostgreSQL opens a cursor, three round trips for a few rows
        if status != VisitStatus.MISSED:
            break
        count += 1
    return count


def ladder_stage_for(missed: int) -> str:
    return next(stage for threshold, stage in LADDER if missed >= threshold)


def patient_ladder_update(patient: Patient, now: dt.datetime | None = None) -> str | None:
    """Move the patient to the ladder stage their consecutive misses call for; returns the new stage if it changed.

    Reaching the top marks the patient lost to follow-up (still followed, still reminded); a recorded visit
    brings them back to active. A closed patient is never moved.
    """
    now = now or timezone.now()
    if patient.status not in (PatientStatus.ACTIVE, PatientStatus.LOST):
        return None
    missed = consecutive_missed(patient)
    stage = ladder_stage_for(missed)
    if stage == patient.ladder_stage:
        return None
    values: dict = {"ladder_stage": stage, "updated_at": now}
    if stage == LadderStage.LOST:
        values.update(
            status=PatientStatus.LOST,
            status_date=timezone.localdate(now, patient.centre.tz),  # the centre's day, as every status date
            status_reason=reasons.lost_reason(missed)[:255],
        )
    elif patient.status == PatientStatus.LOST:
        values.update(status=PatientStatus.ACTIVE, status_reason="")
    with transaction.atomic():
        won = Patient.objects.filter(pk=patient.pk, status=patient.status, ladder_stage=patient.ladder_stage).update(
            **values
        )
        if not won:
            return None
        entry = audit_write(
            "ladder",
            object_type="patient",
            object_id=patient.pk,
            patient_id=patient.pk,
            changes={"from": patient.ladder_stage, "to": stage, "consecutive_missed": missed},
        )
        if stage == LadderStage.LOST:
            webhooks.patient_lost_emit(patient, on=values["status_date"], transition_id=entry.pk)
    logger.info("patient=%s ladder %s -> %s", patient.pk, patient.ladder_stage, stage)
    return stage
