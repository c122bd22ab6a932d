"""The daily sweep and the weekly digest.

Daily: visits whose window closed more than ``MISSED_GRACE_DAYS`` ago (in the centre's time zone) are marked
missed, which plans a "missed visit" notice to the care team; patients then move along the lost-to-follow-up
ladder by their consecutive missed visits (1: overdue, 2: tracing, 3 or more: lost to follow-up), and back down
when a visit is recorded; finally the reminder outbox is topped up for visits entering the look-ahead.
Deceased, withdrawn and transferred patients are never on the ladder.

Weekly: one digest per centre for its care team (counts and admin links, patients by id only), at most once per
centre and week however many times the task runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.care import lifecycle
from surveillance.integrations import webhooks
from surveillance.models import (
    FollowUpVisit,
    Patient,
    PatientRequest,
    PatientStatus,
    Reminder,
    ReminderStatus,
    TreatmentCentre,
    VisitStatus,
)
from surveillance.models.patients import CLOSED_STATUSES, LadderStage
from surveillance.models.reminders import CareTeamDigest
from surveillance.reminders import messages, outbox
from surveillance.signals.review import signal_reviews_escalate

logger = logging.getLogger("surveillance.reminders.sweep")

MISSED_REASON = "Window closed without a recorded visit"
#: Consecutive missed visits -> ladder stage (checked from the top).
LADDER = ((3, LadderStage.LOST), (2, LadderStage.TRACING), (1, LadderStage.OVERDUE), (0, LadderStage.ON_TRACK))
LOST_REASON = "No visit attended after {n} consecutive missed visits"
#: A digest claimed this long ago and still unsent is taken over by the next run.
DIGEST_CLAIM = dt.timedelta(minutes=10)


@dataclass
class SweepResult:
    missed: int = 0
    ladder_changes: int = 0
    topped_up: int = 0
    signals_escalated: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def visits_mark_missed(now: dt.datetime | None = None) -> list[int]:
    """Mark scheduled visits missed once their window closed more than the grace period ago; returns patient ids."""
    now = now or timezone.now()
    grace = dt.timedelta(days=settings.CARTWATCH["MISSED_GRACE_DAYS"])
    # The widest bound (the earliest time zone's "today"); each candidate is then checked in its centre's zone.
    bound = (now + dt.timedelta(days=1)).date() - grace
    patients: list[int] = []
    candidates = (
        FollowUpVisit.objects.filter(
            status=VisitStatus.SCHEDULED, window_end__lt=bound, infusion__superseded_by__isnull=True
        )
        .exclude(infusion__patient__status__in=CLOSED_STATUSES)
        .select_related("infusion__patient__centre", "rule")
        .order_by("window_end", "pk")
    )
    for visit in candidates.iterator(chunk_size=500):
        today = now.astimezone(visit.infusion.patient.centre.tz).date()
        if visit.window_end + grace >= today:
            continue
        try:
            lifecycle.visit_mark_missed(visit, reason=MISSED_REASON, now=now)
        except lifecycle.TransitionError:
            continue  # someone recorded it (or another sweep marked it) in the meantime
        patients.append(visit.infusion.patient_id)
    return patients


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
    for status in settled.iterator():
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
            status=PatientStatus.LOST, status_date=now.date(), status_reason=LOST_REASON.format(n=missed)[:255]
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


def daily_sweep(now: dt.datetime | None = None) -> SweepResult:
    """Mark missed visits, move patients along the ladder (up or back down), top the outbox up, escalate
    undecided signal reviews."""
    now = now or timezone.now()
    result = SweepResult()
    touched = visits_mark_missed(now)
    result.missed = len(touched)
    off_track = Patient.objects.filter(
        Q(pk__in=set(touched)) | ~Q(ladder_stage=LadderStage.ON_TRACK),
        status__in=(PatientStatus.ACTIVE, PatientStatus.LOST),
    )
    for patient in off_track.iterator(chunk_size=500):
        if patient_ladder_update(patient, now):
            result.ladder_changes += 1
    result.topped_up = outbox.outbox_top_up(now)
    result.signals_escalated = signal_reviews_escalate(now)
    return result


# --- weekly digest ----------------------------------------------------------------------------------------------
def week_start_of(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def centre_digest_context(centre: TreatmentCentre, now: dt.datetime) -> dict:
    """What the care team should look at this week: counts, and ids with admin links. No names, no MRNs."""
    today = now.astimezone(centre.tz).date()
    visits = FollowUpVisit.objects.filter(infusion__patient__centre=centre).exclude(
        infusion__patient__status__in=CLOSED_STATUSES
    )
    ladder = dict(
        Patient.objects.filter(centre=centre, status__in=(PatientStatus.ACTIVE, PatientStatus.LOST))
        .values_list("ladder_stage")
        .annotate(n=Count("pk"))
        .order_by()
    )
    tracing = (
        Patient.objects.filter(centre=centre, ladder_stage__in=(LadderStage.TRACING, LadderStage.LOST))
        .exclude(status__in=CLOSED_STATUSES)
        .annotate(attempts=Count("contact_attempts"))
        .order_by("pk")[:50]
    )
    failed = Reminder.objects.filter(
        visit__infusion__patient__centre=centre,
        status=ReminderStatus.FAILED,
        updated_at__gte=now - dt.timedelta(days=7),
    ).order_by("pk")[:50]
    return {
        "centre": centre,
        "week_start": week_start_of(today),
        "due_soon": visits.due_between(today, today + dt.timedelta(days=14)).count(),
        "overdue": visits.overdue_on(today).count(),
        "missed_week": visits.filter(
            status=VisitStatus.MISSED, status_changed_at__gte=now - dt.timedelta(days=7)
        ).count(),
        "open_requests": PatientRequest.objects.filter(
            visit__infusion__patient__centre=centre, handled_at__isnull=True
        ).count(),
        "ladder": {
            "overdue": ladder.get(LadderStage.OVERDUE, 0),
            "tracing": ladder.get(LadderStage.TRACING, 0),
            "lost": ladder.get(LadderStage.LOST, 0),
        },
        "tracing": [
            {
                "id": p.pk,
                "attempts": p.attempts,
                "url": messages.site_url(reverse("admin:surveillance_patient_change", args=[p.pk])),
            }
            for p in tracing
        ],
        "failed": [
            {
                "id": r.pk,
                "code": r.last_smtp_code,
                "url": messages.site_url(reverse("admin:surveillance_reminder_change", args=[r.pk])),
            }
            for r in failed
        ],
        "admin_url": messages.site_url(reverse("admin:index")),
    }


def care_team_digest_send(now: dt.datetime | None = None) -> int:
    """Send this week's digest to every centre that has not had it; returns how many went out.

    The (centre, week) row is claimed first, so a second beat or a re-run sends nothing; a claim left unsent by
    a crash is taken over after ``DIGEST_CLAIM``. A mail error is recorded and raised (the task retries).
    """
    now = now or timezone.now()
    sent = 0
    connection = None
    try:
        for centre in TreatmentCentre.objects.exclude(care_team_email="").order_by("pk"):
            week = week_start_of(now.astimezone(centre.tz).date())
            digest = _digest_claim(centre, week, now)
            if digest is None:
                continue
            message_id = messages.message_id_for(f"digest:{centre.pk}:{week.isoformat()}")
            if connection is None:
                connection = get_connection(fail_silently=False)
                connection.open()
            email = messages.digest_message(
                centre, centre_digest_context(centre, now), message_id=message_id, connection=connection
            )
            try:
                email.send()
            except Exception as exc:
                CareTeamDigest.objects.filter(pk=digest.pk).update(last_error=type(exc).__name__)
                raise
            CareTeamDigest.objects.filter(pk=digest.pk).update(sent_at=now, message_id=message_id, last_error="")
            logger.info("digest centre=%s week=%s sent", centre.pk, week)
            sent += 1
    finally:
        if connection is not None:
            connection.close()
    return sent


def _digest_claim(centre: TreatmentCentre, week: dt.date, now: dt.datetime) -> CareTeamDigest | None:
    try:
        with transaction.atomic():
            return CareTeamDigest.objects.create(centre=centre, week_start=week, claimed_at=now)
    except IntegrityError:
        pass
    digest = CareTeamDigest.objects.get(centre=centre, week_start=week)
    if digest.sent_at is not None:
        return None
    won = CareTeamDigest.objects.filter(
        pk=digest.pk, sent_at__isnull=True, claimed_at=digest.claimed_at, claimed_at__lt=now - DIGEST_CLAIM
    ).update(claimed_at=now)
    if not won and digest.last_error == "":
        return None
    if not won:
        # the last claimant failed and said so: take it over at once
        won = CareTeamDigest.objects.filter(pk=digest.pk, sent_at__isnull=True, claimed_at=digest.claimed_at).update(
            claimed_at=now, last_error=""
        )
    return digest if won else None
