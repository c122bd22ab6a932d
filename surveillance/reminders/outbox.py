"""Planning the reminder outbox: which messages a visit needs, and the moment each must go out.

Rows are planned for visits due within a rolling look-ahead (``REMINDER_LOOKAHEAD_DAYS``) rather than for fifteen
years at once: the outbox stays small enough for the dispatcher's claim query to be instant, and the daily sweep
tops it up (``outbox_top_up``). A visit that moves gets new rows (each row stores the visit's iCalendar sequence
it was planned for, and its key carries it too), and its old pending rows are cancelled in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from surveillance.db import bulk_rows
from surveillance.models import FollowUpVisit, Reminder, ReminderStatus, VisitStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import channels
from surveillance.scheduling import engine

UTC = dt.UTC


@dataclass(frozen=True)
class ReminderPlan:
    key: str
    audience: str
    purpose: str
    days_before: int
    send_after: dt.datetime


def local_morning(day: dt.date, tz: zoneinfo.ZoneInfo, hour: int | None = None) -> dt.datetime:
    """``hour`` o'clock on ``day`` in ``tz``, as UTC: reminders go out in the recipient's morning, never at night.

    Computing from the local wall clock (not adding 24 h to a UTC instant) keeps the hour right across a
    daylight-saving change.
    """
    hour = settings.CARTWATCH["REMINDER_HOUR"] if hour is None else hour
    return dt.datetime.combine(day, dt.time(hour), tzinfo=tz).astimezone(UTC)


def cadence_of(visit: FollowUpVisit) -> engine.ReminderCadence:
    """The reminder cadence of the rule the visit came from (the protocol's default when unset)."""
    data = visit.rule.reminders or {}
    default = engine.ReminderCadence()
    return engine.ReminderCadence(
        patient_days_before=tuple(data.get("patient_days_before", default.patient_days_before)),
        care_team_window_open=bool(data.get("care_team_window_open", default.care_team_window_open)),
        escalate_overdue=bool(data.get("escalate_overdue", default.escalate_overdue)),
    )


def reminder_key(visit: FollowUpVisit, audience: str, purpose: str, days_before: int = 0) -> str:
    """Idempotency key: one row per visit identity x sequence x audience x purpose (x days before)."""
    return (
        f"{visit.infusion_id}:{visit.rule_code}:{visit.occurrence}:s{visit.sequence}:{audience}:{purpose}:{days_before}"
    )


def visit_reminder_plans(visit: FollowUpVisit, now: dt.datetime) -> list[ReminderPlan]:
    """The outbox rows a scheduled visit needs from ``now`` on.

    Moments already past are dropped, with two exceptions that keep a late-planned visit from going unannounced:
    the latest past patient reminder is sent now if the visit is still ahead, and the window-open notice is sent
    now if the window is still open.
    """
    cadence = cadence_of(visit)
    patient = visit.infusion.patient
    centre_tz = patient.centre.tz
    today = now.astimezone(centre_tz).date()
    plans: list[ReminderPlan] = []

    upcoming = sorted(
        (local_morning(visit.due_date - dt.timedelta(days=d), patient.tz), d) for d in cadence.patient_days_before
    )
    past = [(moment, d) for moment, d in upcoming if moment < now]
    if past and visit.due_date > today:
        _, d = past[-1]
        plans.append(_plan(visit, Audience.PATIENT, Purpose.UPCOMING, d, now))
    plans += [_plan(visit, Audience.PATIENT, Purpose.UPCOMING, d, m) for m, d in upcoming if m >= now]

    if cadence.care_team_window_open:
        moment = local_morning(visit.window_start, centre_tz)
        if moment >= now:
            plans.append(_plan(visit, Audience.CARE_TEAM, Purpose.WINDOW_OPEN, 0, moment))
        elif visit.window_end >= today:
            plans.append(_plan(visit, Audience.CARE_TEAM, Purpose.WINDOW_OPEN, 0, now))
    if cadence.escalate_overdue:
        moment = local_morning(visit.window_end + dt.timedelta(days=1), centre_tz)
        if moment >= now:
            plans.append(_plan(visit, Audience.CARE_TEAM, Purpose.OVERDUE, 0, moment))
    return plans


def visit_notice_plans(visit: FollowUpVisit, now: dt.datetime) -> list[ReminderPlan]:
    """One-off notices a change of the visit calls for, due at once.

    A missed visit tells the care team. A visit the patient has already been sent a calendar entry for updates
    that entry when it moves (a new SEQUENCE) and cancels it when it is cancelled.
    """
    if visit.status == VisitStatus.MISSED:
        return [_plan(visit, Audience.CARE_TEAM, Purpose.MISSED, 0, now)]
    if visit.status not in (VisitStatus.SCHEDULED, VisitStatus.CANCELLED):
        return []
    announced = list(
        Reminder.objects.filter(
            visit=visit,
            audience=Audience.PATIENT,
            purpose__in=(Purpose.UPCOMING, Purpose.MOVED),
            status=ReminderStatus.SENT,
        ).values_list("sequence", flat=True)
    )
    if not announced:
        return []
    if visit.status == VisitStatus.CANCELLED:
        return [_plan(visit, Audience.PATIENT, Purpose.CANCELLED, 0, now)]
    if max(announced) < visit.sequence and visit.due_date >= now.astimezone(visit.infusion.patient.tz).date():
        return [_plan(visit, Audience.PATIENT, Purpose.MOVED, 0, now)]
    return []


def _without_repeats(visit: FollowUpVisit, wanted: dict[str, ReminderPlan], now: dt.datetime) -> dict:
    """Drop catch-up notices (due at once because their moment passed) that would repeat what was said.

    After a move, the patient hears of it from the "moved" notice, not from a late reminder as well; the care
    team hears once that a visit's window is open, whatever its sequence.
    """
    catch_ups = [plan for plan in wanted.values() if plan.send_after <= now]
    if not catch_ups:
        return wanted
    sent = Reminder.objects.filter(visit=visit, status=ReminderStatus.SENT).values_list(
        "audience", "purpose", "sequence"
    )
    window_told = any(purpose == Purpose.WINDOW_OPEN for _, purpose, _ in sent)
    patient_told = any(plan.purpose == Purpose.MOVED for plan in wanted.values()) or any(
        audience == Audience.PATIENT and purpose in (Purpose.UPCOMING, Purpose.MOVED) and sequence == visit.sequence
        for audience, purpose, sequence in sent
    )
    repeats = {
        plan.key
        for plan in catch_ups
        if (plan.purpose == Purpose.WINDOW_OPEN and window_told) or (plan.purpose == Purpose.UPCOMING and patient_told)
    }
    return {key: plan for key, plan in wanted.items() if key not in repeats}


def _plan(visit: FollowUpVisit, audience: str, purpose: str, days_before: int, at: dt.datetime) -> ReminderPlan:
    return ReminderPlan(reminder_key(visit, audience, purpose, days_before), audience, purpose, days_before, at)


def visit_reminders_sync(visit: FollowUpVisit, now: dt.datetime | None = None) -> tuple[int, int]:
    """Make the visit's pending outbox rows match what it needs now; returns (created, cancelled).

    Sent rows are history and stay. Call inside the transaction that changed the visit.
    """
    now = now or timezone.now()
    wanted: dict[str, ReminderPlan] = {}
    if visit.infusion.patient.under_follow_up:
        if visit.status == VisitStatus.SCHEDULED:
            wanted = {plan.key: plan for plan in visit_reminder_plans(visit, now)}
        wanted.update({plan.key: plan for plan in visit_notice_plans(visit, now)})
        wanted = _without_repeats(visit, wanted, now)
    cancelled = _pending_cancel(
        Reminder.objects.filter(visit=visit, status=ReminderStatus.PENDING).exclude(idempotency_key__in=wanted), now
    )
    existing = set(
        Reminder.objects.filter(visit=visit, idempotency_key__in=wanted).values_list("idempotency_key", flat=True)
    )
    rows = [_outbox_row(visit, key, plan) for key, plan in wanted.items() if key not in existing]
    Reminder.objects.bulk_create(rows, ignore_conflicts=True)
    FollowUpVisit.objects.filter(pk=visit.pk).update(reminders_planned_for=visit.sequence)
    visit.reminders_planned_for = visit.sequence
    return len(rows), cancelled


def visits_reminders_settle(visit_ids: list[int], now: dt.datetime) -> int:
    """What ``visit_reminders_sync`` does for visits just settled (completed): they need no reminder, so their
    pending rows are cancelled, in one statement for them all. The caller sets ``reminders_planned_for``."""
    return _pending_cancel(Reminder.objects.filter(visit__in=visit_ids, status=ReminderStatus.PENDING), now)


def _pending_cancel(pending, now: dt.datetime) -> int:
    return pending.update(status=ReminderStatus.CANCELLED, outcome_reason="visit re-planned or closed", updated_at=now)


def _outbox_row(visit: FollowUpVisit, key: str, plan: ReminderPlan) -> Reminder:
    """The outbox row of one planned reminder: first tried at the moment it is due."""
    return Reminder(
        visit=visit,
        audience=plan.audience,
        purpose=plan.purpose,
        days_before=plan.days_before,
        channel=channels.reminder_channel(visit.infusion.patient, plan.audience),
        idempotency_key=key,
        sequence=visit.sequence,
        send_after=plan.send_after,
        next_attempt_at=plan.send_after,
    )


def new_visits_reminders_plan(visits: list[FollowUpVisit], now: dt.datetime) -> int:
    """The outbox rows of visits just created, in one insert; returns how many.

    What ``visit_reminders_sync`` plans for a new visit (it has no rows to cancel, and nothing was sent that a
    notice or a catch-up could repeat), for many visits at once. The caller sets each visit's
    ``reminders_planned_for``, as ``visit_reminders_sync`` does after the fact. A key names the visit's identity,
    which no stored visit had (its rows would have gone with it), so no key is already taken.
    """
    rows = []
    for visit in visits:
        if not visit.infusion.patient.under_follow_up or visit.status != VisitStatus.SCHEDULED:
            continue
        wanted = {plan.key: plan for plan in visit_reminder_plans(visit, now)}
        rows += [
            (
                visit.pk,
                plan.audience,
                plan.purpose,
                plan.days_before,
                channels.reminder_channel(visit.infusion.patient, plan.audience),
                key,
                visit.sequence,
                plan.send_after,
                plan.send_after,
            )
            for key, plan in wanted.items()
        ]
    bulk_rows.rows_insert(Reminder, NEW_REMINDER_COLUMNS, rows)
    return len(rows)


#: The columns of a new outbox row (``_outbox_row``): first tried at the moment it is due.
NEW_REMINDER_COLUMNS = (
    "visit_id",
    "audience",
    "purpose",
    "days_before",
    "channel",
    "idempotency_key",
    "sequence",
    "send_after",
    "next_attempt_at",
)


def lookahead_end(today: dt.date) -> dt.date:
    return today + dt.timedelta(days=settings.CARTWATCH["REMINDER_LOOKAHEAD_DAYS"])


def in_lookahead(visit: FollowUpVisit, today: dt.date) -> bool:
    return (
        visit.status == VisitStatus.SCHEDULED and visit.window_end >= today and visit.due_date <= lookahead_end(today)
    )


def outbox_top_up(now: dt.datetime | None = None, batch_size: int = 500) -> int:
    """Plan rows for scheduled visits that entered the look-ahead; returns how many visits were planned.

    Each batch commits on its own so a large backlog never holds one long transaction.
    """
    now = now or timezone.now()
    # The widest bounds over time zones (UTC's day give or take one); each visit's plans use its centre's day.
    utc_day = now.date()
    planned = 0
    while True:
        with transaction.atomic():
            batch = list(
                FollowUpVisit.objects.filter(
                    Q(reminders_planned_for__isnull=True),
                    status=VisitStatus.SCHEDULED,
                    due_date__lte=lookahead_end(utc_day + dt.timedelta(days=1)),
                    window_end__gte=utc_day - dt.timedelta(days=1),
                )
                .select_related("rule", "infusion__patient__centre")
                .order_by("due_date")[:batch_size]
            )
            for visit in batch:
                visit_reminders_sync(visit, now)
        planned += len(batch)
        if len(batch) < batch_size:
            return planned
