"""State transitions of visits and patients, shared by the admin, the API, the tasks and the demo.

Every transition is a compare-and-set (``UPDATE ... WHERE status = <expected>``, checked by row count) so two
people or two workers acting at once cannot both win, and every one writes its history row and audit entry, and
emits the webhook event it causes, in the same transaction. Reminders follow the visit: a settled or moved
visit's pending reminders are re-planned.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Sequence

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from surveillance.access.audit import audit_entries_insert, audit_entry_build, audit_write
from surveillance.care import ladder, reasons
from surveillance.db import bulk_rows
from surveillance.integrations import webhooks
from surveillance.models import (
    AuditEntry,
    ContactAttempt,
    FollowUpVisit,
    Patient,
    PatientRequest,
    PatientStatus,
    Reminder,
    VisitChange,
    VisitStatus,
)
from surveillance.models.patients import CLOSED_STATUSES, LadderStage
from surveillance.models.reminders import ReminderStatus
from surveillance.models.visits import RECORDABLE_STATUSES
from surveillance.reminders import outbox

#: A visit entering or leaving one of these moves its patient on the lost-to-follow-up ladder.
LADDER_STATUSES = frozenset({VisitStatus.COMPLETED, VisitStatus.MISSED})


class TransitionError(Exception):
    """The object is not in the state the action needs (someone else changed it first, or the input is wrong)."""


def _audit(action: str, obj, patient_id: int | None, by, changes: dict) -> None:
    audit_write(
        action, object_type=obj._meta.model_name, object_id=obj.pk, patient_id=patient_id, changes=changes, by=by
    )


def _snapshot(visit: FollowUpVisit) -> dict:
    """What a visit's history row and audit entry say of it, before and after a change."""
    return {"status": visit.status, "due_date": str(visit.due_date), "sequence": visit.sequence}


def _change_rows(visit: FollowUpVisit, before: dict, *, action: str, by, reason: str) -> tuple[VisitChange, AuditEntry]:
    """The history row and audit entry of one change, unsaved: the one place both are decided, whether a
    transition writes them at once (``_transition``) or with many others (``visits_complete_from_ehr``)."""
    after = _snapshot(visit)
    change = VisitChange(visit=visit, by=by, action=action, before=before, after=after, reason=reason)
    entry = audit_entry_build(
        action,
        object_type=visit._meta.model_name,
        object_id=visit.pk,
        patient_id=visit.infusion.patient_id,
        changes={"before": before, "after": after, "reason": reason},
        by=by,
    )
    return change, entry


#: What a transition reads again after its update: every field but the visit's infusion, which never changes. The
#: infusion, patient and centre the caller read with the visit then stay with it (a full refresh drops them), and
#: what follows the change (webhooks, the ladder, the outbox) does not read them again: three queries or more for
#: each visit the daily sweep marks missed.
_REREAD = tuple(field.name for field in FollowUpVisit._meta.concrete_fields if field.name != "infusion")


def _transition(
    visit: FollowUpVisit,
    expected: tuple[str, ...],
    *,
    action: str,
    by,
    reason: str,
    now: dt.datetime,
    match: Q | None = None,
    **values,
) -> FollowUpVisit:
    """``match``: what else must still hold of the visit for the change to apply."""
    before = _snapshot(visit)
    with transaction.atomic():
        current = FollowUpVisit.objects.filter(match or Q(), pk=visit.pk, status__in=expected, sequence=visit.sequence)
        updated = current.update(status_changed_at=now, status_changed_by=by, updated_at=now, **values)
        if updated != 1:
            raise TransitionError(f"visit {visit.pk} is no longer {' or '.join(expected)}; reload and try again")
        visit.refresh_from_db(fields=_REREAD)
        change, entry = _change_rows(visit, before, action=action, by=by, reason=reason)
        change.save()
        entry.save()
        if visit.status == VisitStatus.MISSED and before["status"] != VisitStatus.MISSED:
            webhooks.visit_missed_emit(visit)
        if LADDER_STATUSES & {visit.status, before["status"]}:  # the consecutive misses may have changed
            ladder.patient_ladder_update(
                Patient.objects.select_related("centre").get(pk=visit.infusion.patient_id), now
            )
        outbox.visit_reminders_sync(visit, now)
    return visit


def _completion(completed_on: dt.date, source: str, results: dict | None = None) -> dict:
    """The values a completion writes."""
    return {
        "status": VisitStatus.COMPLETED,
        "completed_on": completed_on,
        "completed_source": source[:255],
        "results": results or {},
        "status_reason": "",
    }


def _ehr_reason(source: str) -> str:
    return f"EHR encounter {source}"[:255]


#: What an EHR encounter may complete: a visit still open, or one the daily sweep (no person) marked missed.
EHR_COMPLETABLE = (*RECORDABLE_STATUSES, VisitStatus.MISSED)
EHR_COMPLETABLE_MATCH = ~Q(status=VisitStatus.MISSED) | Q(status_changed_by__isnull=True)


def visit_mark_completed(
    visit: FollowUpVisit,
    *,
    completed_on: dt.date,
    results: dict | None = None,
    by=None,
    source: str = "",
    now: dt.datetime | None = None,
) -> FollowUpVisit:
    """Record a visit as done. A date outside the window is allowed (it happened) but must not be in the future.

    An unrecorded visit (planned after its window closed) is recorded the same way, from the clinic's notes.
    ``source`` names the EHR encounter that says it took place (``care.reconcile``); empty when a person says so.
    The EHR's word also stands against the daily sweep's: a visit the sweep marked missed (no person did) is
    recorded done when an encounter shows it took place."""
    now = now or timezone.now()
    if completed_on > timezone.localdate(now):
        raise TransitionError("a visit cannot be completed on a future date")
    expected, match = (EHR_COMPLETABLE, EHR_COMPLETABLE_MATCH) if source else (RECORDABLE_STATUSES, None)
    return _transition(
        visit,
        expected,
        match=match,
        action="completed",
        by=by,
        reason=_ehr_reason(source) if source else "",
        now=now,
        **_completion(completed_on, source, results),
    )


def visits_complete_from_ehr(
    completions: Sequence[tuple[FollowUpVisit, str, dt.date]], *, now: dt.datetime | None = None
) -> set[int]:
    """``visit_mark_completed`` from EHR encounters (visit, encounter id, day) for many visits at once, to the
    same rows: returns the pks of the visits completed; the others were settled meanwhile (a lost race).

    The compare-and-set holds for all of them together: the visits still completable are locked and read in one
    query, then updated in one statement, their history rows and audit entries inserted in one each, and their
    pending reminders cancelled in one. A completion never emits an event, and it can only lower a patient's
    consecutive misses, so each patient's ladder moves at most once after the batch, to the stage their misses
    then call for; that is the one move completing their visits one by one makes too, unless the patient has a
    missed visit and more than one completion in the batch: each of those completions may step them down the
    lost-to-follow-up ladder, each step a ladder change of its own, so their visits are completed one by one."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    completions = [item for item in completions if item[2] <= today]  # a future day is refused, as one by one
    if not completions:
        return set()
    with transaction.atomic():
        per_patient = Counter(visit.infusion.patient_id for visit, _, _ in completions)
        with_missed = set(
            FollowUpVisit.objects.filter(
                infusion__patient__in=list(per_patient),
                infusion__superseded_by__isnull=True,
                status=VisitStatus.MISSED,
            ).values_list("infusion__patient_id", flat=True)
        )
        stepping = {patient for patient in with_missed if per_patient[patient] > 1}
        done: set[int] = set()
        for visit, source, day in completions:
            if visit.infusion.patient_id in stepping:
                with contextlib.suppress(TransitionError):
                    done.add(visit_mark_completed(visit, completed_on=day, source=source, now=now).pk)
        bulk = [item for item in completions if item[0].infusion.patient_id not in stepping]
        if not bulk:
            return done
        sequences = {visit.pk: visit.sequence for visit, _, _ in bulk}
        still = (
            FollowUpVisit.objects.select_for_update()
            .filter(EHR_COMPLETABLE_MATCH, pk__in=sequences, status__in=EHR_COMPLETABLE)
            .values_list("pk", "sequence")
        )
        won = {pk for pk, sequence in still if sequences[pk] == sequence}
        rows: list[tuple[VisitChange, AuditEntry]] = []
        changed: list[FollowUpVisit] = []
        for visit, source, day in bulk:
            if visit.pk not in won:
                continue
            before = _snapshot(visit)
            values = _completion(day, source)
            # ``_transition``'s stamps; a completed visit wants no reminder (``outbox.visits_reminders_settle``)
            values.update(
                status_changed_at=now, status_changed_by_id=None, updated_at=now, reminders_planned_for=visit.sequence
            )
            for name, value in values.items():
                setattr(visit, name, value)
            changed.append(visit)
            rows.append(_change_rows(visit, before, action="completed", by=None, reason=_ehr_reason(source)))
        if not changed:
            return done
        columns = [*values]
        bulk_rows.rows_update(FollowUpVisit, columns, [(v.pk, *(getattr(v, c) for c in columns)) for v in changed])
        history = [(c.visit_id, c.by_id, c.action, c.before, c.after, c.reason) for c, _ in rows]
        bulk_rows.rows_insert(VisitChange, ("visit_id", "by_id", "action", "before", "after", "reason"), history)
        audit_entries_insert(entry for _, entry in rows)
        # a patient on track with no missed visit stays on track; any other may move, once
        moving = (
            Patient.objects.select_related("centre")
            .filter(pk__in={v.infusion.patient_id for v in changed})
            .filter(~Q(ladder_stage=LadderStage.ON_TRACK) | Q(pk__in=with_missed))
        )
        for patient in moving:
            ladder.patient_ladder_update(patient, now)
        outbox.visits_reminders_settle([visit.pk for visit in changed], now)
    return done | won


def visit_ehr_completion_undo(
    visit: FollowUpVisit, *, by, reason: str, now: dt.datetime | None = None
) -> FollowUpVisit:
    """A coordinator says the EHR encounter that completed the visit was not this visit: it is scheduled again, and
    that encounter is remembered so that the next import does not complete it again."""
    if by is None or not reason.strip():
        raise TransitionError("undoing an EHR completion needs a person and a reason")
    if visit.status != VisitStatus.COMPLETED or not visit.completed_source:
        raise TransitionError("only a visit completed from the EHR can have its completion undone")
    return _transition(
        visit,
        (VisitStatus.COMPLETED,),
        action="ehr_completion_undone",
        by=by,
        reason=reason,
        now=now or timezone.now(),
        match=Q(completed_source=visit.completed_source),
        status=VisitStatus.SCHEDULED,
        completed_on=None,
        completed_source="",
        ehr_completion_undone=visit.completed_source,
        reminders_planned_for=None,
    )


def visit_book(
    visit: FollowUpVisit,
    *,
    on: dt.date | None,
    source: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    by=None,
    now: dt.datetime | None = None,
) -> FollowUpVisit:
    """The EHR booked the visit for ``on`` (its appointment ``source``; ``start`` and ``end`` its hours when it
    gave them), or cancelled that booking (``on`` None): reminders then speak of the booked day instead of asking
    the patient to book one, and their calendar entry is confirmed for it."""
    if on is not None and not visit.window_start <= on <= visit.window_end:
        raise TransitionError(f"a booking must lie within the visit window {visit.window_start} to {visit.window_end}")
    return _transition(
        visit,
        (VisitStatus.SCHEDULED,),
        action="booked" if on else "booking_cancelled",
        by=by,
        reason=f"EHR appointment {source}"[:255],
        now=now or timezone.now(),
        match=Q(booked_for=visit.booked_for, booked_source=visit.booked_source),
        booked_for=on,
        booked_source=source[:255] if on else "",
        booked_start=start if on else None,
        booked_end=end if on and start else None,
    )


def visit_cancel(visit: FollowUpVisit, *, reason: str, by=None, now: dt.datetime | None = None) -> FollowUpVisit:
    """A visit that will not (or, for an unrecorded one, did not) take place, with the reason.

    Recording an unrecorded visit as not done cancels it rather than marking it missed: nobody was reminded of it
    or could have booked it here, so it does not move the patient along the lost-to-follow-up ladder."""
    if not reason.strip():
        raise TransitionError("a cancellation needs a reason")
    return _transition(
        visit,
        RECORDABLE_STATUSES,
        action="cancelled",
        by=by,
        reason=reason,
        now=now or timezone.now(),
        status=VisitStatus.CANCELLED,
        status_reason=reason[:255],
        planner_cancelled=False,
    )


def visit_reschedule(
    visit: FollowUpVisit, *, new_date: dt.date, by=None, reason: str = "", now: dt.datetime | None = None
) -> FollowUpVisit:
    """Move the due date within the protocol window; the iCalendar sequence rises so calendars update."""
    if not visit.window_start <= new_date <= visit.window_end:
        raise TransitionError(
            f"the new date must lie within the visit window {visit.window_start} to {visit.window_end}"
        )
    if new_date == visit.due_date:
        return visit
    return _transition(
        visit,
        (VisitStatus.SCHEDULED,),
        action="rescheduled",
        by=by,
        reason=reason,
        now=now or timezone.now(),
        due_date=new_date,
        sequence=visit.sequence + 1,
        reminders_planned_for=None,
    )


def visit_mark_missed(visit: FollowUpVisit, *, reason: str, by=None, now: dt.datetime | None = None) -> FollowUpVisit:
    return _transition(
        visit,
        (VisitStatus.SCHEDULED,),
        action="missed",
        by=by,
        reason=reason,
        now=now or timezone.now(),
        status=VisitStatus.MISSED,
        status_reason=reason[:255],
    )


def visit_correct(
    visit: FollowUpVisit,
    *,
    to_status: str,
    reason: str,
    by,
    completed_on: dt.date | None = None,
    now: dt.datetime | None = None,
) -> FollowUpVisit:
    """An audited correction: the only way a settled visit changes state again (e.g. missed -> completed)."""
    if by is None or not reason.strip():
        raise TransitionError("a correction needs a person and a reason")
    if to_status == visit.status:
        raise TransitionError(f"the visit is already {to_status}")
    values: dict = {
        "status": to_status,
        "status_reason": "" if to_status in ("scheduled", "completed") else reason,
    }
    if to_status == VisitStatus.COMPLETED:
        if completed_on is None:
            raise TransitionError("a correction to completed needs the date it was done")
        values["completed_on"] = completed_on
    return _transition(
        visit,
        (visit.status,),
        action="corrected",
        by=by,
        reason=reason,
        now=now or timezone.now(),
        planner_cancelled=False,
        reminders_planned_for=None,
        **values,
    )


def patient_close(
    patient: Patient, *, status: str, on: dt.date, reason: str, by=None, now: dt.datetime | None = None
) -> int:
    """Deceased, withdrawn or transferred: off every worklist, every open visit cancelled, every reminder stopped.

    Unrecorded visits (planned after their window closed) are cancelled too when their window opened after ``on``:
    they cannot have taken place; earlier ones can still be recorded. Returns the number of visits cancelled.
    """
    if status not in CLOSED_STATUSES:
        raise TransitionError(f"{status!r} does not close follow-up")
    now = now or timezone.now()
    with transaction.atomic():
        updated = (
            Patient.objects.filter(pk=patient.pk)
            .exclude(status__in=CLOSED_STATUSES)
            .update(
                status=status,
                status_date=on,
                status_reason=reason[:255],
                ladder_stage=LadderStage.ON_TRACK,
                updated_at=now,
            )
        )
        if updated != 1:
            raise TransitionError("the patient's follow-up is already closed")
        visits = FollowUpVisit.objects.filter(
            Q(status=VisitStatus.SCHEDULED) | Q(status=VisitStatus.UNRECORDED, window_start__gt=on),
            infusion__patient=patient,
        )
        cancelled = visits.update(
            status=VisitStatus.CANCELLED,
            status_reason=reasons.patient_closed_reason(status)[:255],
            planner_cancelled=False,
            status_changed_at=now,
            status_changed_by=by,
            updated_at=now,
        )
        Reminder.objects.filter(visit__infusion__patient=patient, status=ReminderStatus.PENDING).update(
            status=ReminderStatus.CANCELLED, outcome_reason=f"patient {status}", updated_at=now
        )
        _audit(
            "close",
            patient,
            patient.pk,
            by,
            {"status": status, "on": on.isoformat(), "reason": reason[:255], "visits_cancelled": cancelled},
        )
    patient.refresh_from_db()
    return cancelled


def patient_mark_lost(
    patient: Patient, *, on: dt.date, reason: str, by=None, now: dt.datetime | None = None
) -> Patient:
    """A coordinator records that an active patient can no longer be reached: lost to follow-up, at the top of the
    ladder. As when the sweep gets there, visits and reminders continue (a patient found again comes back on a
    recorded visit) and the audit row is the ladder's, so the same webhook event follows."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = Patient.objects.filter(pk=patient.pk, status=PatientStatus.ACTIVE).update(
            status=PatientStatus.LOST,
            status_date=on,
            status_reason=reason[:255],
            ladder_stage=LadderStage.LOST,
            updated_at=now,
        )
        if updated != 1:
            raise TransitionError("only an active patient can be marked lost to follow-up")
        _audit(
            "ladder",
            patient,
            patient.pk,
            by,
            {"from": patient.ladder_stage, "to": LadderStage.LOST, "on": on.isoformat(), "reason": reason[:255]},
        )
    patient.refresh_from_db()
    return patient


#: The statuses a person records by hand (active comes back by itself, on a recorded visit).
RECORDED_STATUSES = (PatientStatus.LOST, *CLOSED_STATUSES)


def patient_status_date_problem(patient: Patient, on: dt.date, today: dt.date) -> str | None:
    """Why ``on`` cannot be the date of a status change, or None: not in the future, not before birth."""
    if on > today:
        return "cannot be in the future"
    if patient.birth_date is not None and on < patient.birth_date:
        return "cannot be before the patient's birth date"
    return None


def patient_status_record(
    patient: Patient, *, status: str, on: dt.date, reason: str, by=None, now: dt.datetime | None = None
) -> Patient:
    """Record a death, a withdrawal, a transfer (each closes follow-up) or a loss to follow-up, dated and with a
    reason: the one way a patient's status is set by hand, from the API as from the admin."""
    if not reason.strip():
        raise TransitionError("a status change needs a reason")
    problem = patient_status_date_problem(patient, on, timezone.localdate(now or timezone.now()))
    if problem:
        raise TransitionError(problem)
    if status == PatientStatus.LOST:
        return patient_mark_lost(patient, on=on, reason=reason, by=by, now=now)
    patient_close(patient, status=status, on=on, reason=reason, by=by, now=now)
    return patient


def contact_attempt_log(
    patient: Patient,
    *,
    method: str,
    reached: bool,
    note: str = "",
    by=None,
    at: dt.datetime | None = None,
):
    """Record an attempt to reach a patient (the lost-to-follow-up ladder's log), audited."""
    with transaction.atomic():
        attempt = ContactAttempt.objects.create(
            patient=patient, attempted_at=at or timezone.now(), method=method, reached=reached, note=note[:500], by=by
        )
        _audit("contact_attempt", attempt, patient.pk, by, {"method": method, "reached": reached})
    return attempt


def patient_request_handle(request_row, *, by, now: dt.datetime | None = None) -> bool:
    """Mark a patient's request (confirm, reschedule, done elsewhere) handled; False if someone already did."""
    now = now or timezone.now()
    with transaction.atomic():
        updated = PatientRequest.objects.filter(pk=request_row.pk, handled_at__isnull=True).update(
            handled_at=now, handled_by=by
        )
        if updated:
            patient_id = request_row.visit.infusion.patient_id
            _audit("request_handled", request_row, patient_id, by, {"kind": request_row.kind})
    return bool(updated)
