"""The daily sweep and the weekly digest.

Daily: visits whose window closed more than ``MISSED_GRACE_DAYS`` ago (in the centre's time zone) are marked
missed, which plans a "missed visit" notice to the care team and moves the patient along the lost-to-follow-up
ladder in the same transition (``care.ladder``; a recorded visit brings them back down when it is recorded, not at
the next sweep); finally the reminder outbox is topped up for visits entering the look-ahead. The sweep reads the
overdue visits to find those whose window just closed, and writes only those: its cost follows the backlog of
unrecorded visits and what happened since the last run, not the cohort's history or its years of planned visits.

Weekly: one digest per centre for its care team (counts and admin links, patients by id only), at most once per
centre and week however many times the task runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from surveillance.care import lifecycle, reasons
from surveillance.models import (
    FollowUpVisit,
    Patient,
    PatientRequest,
    PatientStatus,
    Reminder,
    ReminderStatus,
    SignalReview,
    TreatmentCentre,
    VisitStatus,
)
from surveillance.models.patients import CLOSED_STATUSES, LadderStage
from surveillance.models.reminders import CareTeamDigest
from surveillance.models.visits import OPEN_DUE
from surveillance.reminders import messages, outbox
from surveillance.reminders.digests import DIGEST_LOCAL_HOUR, digest_claim
from surveillance.signals.review import signal_reviews_escalate

logger = logging.getLogger("surveillance.reminders.sweep")

MISSED_REASON = reasons.MISSED


@dataclass
class SweepResult:
    missed: int = 0
    ladder_changes: int = 0
    topped_up: int = 0
    signals_escalated: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def visits_mark_missed(now: dt.datetime | None = None) -> list[tuple[int, str]]:
    """Mark scheduled visits missed once their window closed more than the grace period ago; returns, for each
    visit marked, its patient and the ladder stage the patient was on when the sweep read it."""
    now = now or timezone.now()
    grace = dt.timedelta(days=settings.CARTWATCH["MISSED_GRACE_DAYS"])
    # The widest bound (the earliest time zone's "today"); each candidate is then checked in its centre's zone.
    bound = (now + dt.timedelta(days=1)).date() - grace
    patients: list[tuple[int, str]] = []
    # Read through the index of open visits' due dates (``OPEN_DUE``): a visit whose window has closed is past its
    # due date too, so the candidates are among the overdue visits, not among the years of visits planned ahead.
    candidates = (
        FollowUpVisit.objects.alias(open_due=OPEN_DUE)
        .filter(open_due__lt=bound, status=VisitStatus.SCHEDULED, window_end__lt=bound)
        .filter(infusion__superseded_by__isnull=True)
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
        patients.append((visit.infusion.patient_id, visit.infusion.patient.ladder_stage))
    return patients


def daily_sweep(now: dt.datetime | None = None) -> SweepResult:
    """Mark missed visits, move patients along the ladder (up or back down), top the outbox up, escalate
    undecided signal reviews."""
    now = now or timezone.now()
    result = SweepResult()
    marked = visits_mark_missed(now)
    result.missed = len(marked)
    touched: dict[int, str] = {}
    for patient_id, stage in marked:
        touched.setdefault(patient_id, stage)
    # Each visit marked missed moved its patient along the ladder in its own transition (``care.ladder``), as a
    # recorded or corrected visit does when it happens: the sweep re-reads no patient that nothing happened to.
    now_on = dict(Patient.objects.filter(pk__in=touched).values_list("pk", "ladder_stage")) if touched else {}
    result.ladder_changes = sum(1 for pk, stage in touched.items() if now_on.get(pk, stage) != stage)
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
        status__in=(ReminderStatus.FAILED, ReminderStatus.BOUNCED),
        updated_at__gte=now - dt.timedelta(days=7),
    ).order_by("pk")[:50]
    # Second-cancer signals waiting for a physician: how many of each kind, and links by review (the kind stays in
    # the workspace, beside the patient; the email names neither).
    open_signals = SignalReview.objects.filter(patient__centre=centre).unresolved().order_by("priority", "opened_at")
    signals_by_kind = dict(open_signals.values_list("kind").annotate(n=Count("pk")).order_by())
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
        "signals": {
            "by_kind": dict(sorted(signals_by_kind.items())),
            "reviews": [
                {
                    "id": review.pk,
                    "priority": review.priority,
                    "escalated": review.escalated_at is not None,
                    "url": messages.site_url(reverse("admin:surveillance_signalreview_change", args=[review.pk])),
                }
                for review in open_signals[:50]
            ],
        },
        "admin_url": messages.site_url(reverse("admin:index")),
    }


def care_team_digest_send(now: dt.datetime | None = None) -> int:
    """Send this week's digest to every centre that has not had it; returns how many went out.

    A centre's week starts at 07:00 on its own Monday (``DIGEST_LOCAL_HOUR``): the task runs hourly and a centre
    whose Monday morning has not come yet is left for a later run. The (centre, week) row is claimed first, so a
    second beat or a re-run sends nothing; a claim left unsent by a crash is taken over (``digests.digest_claim``). A
    mail error is recorded and raised (the task retries).
    """
    now = now or timezone.now()
    sent = 0
    connection = None
    try:
        for centre in TreatmentCentre.objects.exclude(care_team_email="").order_by("pk"):
            local = now.astimezone(centre.tz)
            if local.weekday() == 0 and local.hour < DIGEST_LOCAL_HOUR:
                continue  # the week's digest waits for the centre's Monday morning, not UTC's
            week = week_start_of(local.date())
            digest = digest_claim(CareTeamDigest, now, done_field="sent_at", centre=centre, week_start=week)
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
