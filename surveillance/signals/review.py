"""Recording second-cancer signals and the physician's decision on each review.

``signals_record`` is the one entry point for data arriving from an EHR (the importer calls it with the records it
parsed): it evaluates the stored signal rules, records each new piece of evidence once, adds it to the patient's
unresolved review of that kind or opens one, and writes the audit rows in the same transaction. It never emails
the patient: a signal is for the care team (clinical reference (g)).

Decisions are compare-and-set on the review's status, checked by row count, so two physicians deciding at once
get one winner and a readable error; each writes its audit row with the change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveillance.access.audit import audit_write
from surveillance.care.reporting import malignancy_event_record
from surveillance.models import (
    Infusion,
    MalignancyEvent,
    MalignancyType,
    PatientStatus,
    Signal,
    SignalReview,
    SignalReviewStatus,
    SignalRuleSet,
    WorkupItem,
)
from surveillance.models.signals import UNRESOLVED_STATUSES
from surveillance.signals.rules import (
    ClinicalRecords,
    InfusionFacts,
    RaisedSignal,
    RuleSet,
    indication_codes,
    ruleset_from_dict,
    signals_evaluate,
)

logger = logging.getLogger(__name__)


class SignalError(Exception):
    """A review cannot take the decision asked for (already decided, or the input is incomplete)."""


@dataclass
class SignalReport:
    """What one call of ``signals_record`` did, in ids and counts only (safe to log)."""

    raised: int = 0
    duplicates: int = 0
    reviews_opened: list[int] = field(default_factory=list)
    reviews_joined: list[int] = field(default_factory=list)
    unconverted: list[str] = field(default_factory=list)
    undated: list[str] = field(default_factory=list)
    after_death: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "raised": self.raised,
            "duplicates": self.duplicates,
            "reviews_opened": self.reviews_opened,
            "reviews_joined": self.reviews_joined,
            "unconverted": self.unconverted,
            "undated": self.undated,
            "after_death": self.after_death,
        }


def ruleset_current() -> tuple[SignalRuleSet, RuleSet]:
    """The newest loaded version of the signal rules, stored and parsed."""
    stored = SignalRuleSet.objects.order_by("-version", "-pk").first()
    if stored is None:
        raise SignalError("no signal rules are loaded; run load_seeds")
    return stored, ruleset_from_dict(stored.content)


def infusion_facts(infusion: Infusion) -> InfusionFacts:
    return InfusionFacts(infusion.infusion_date, indication_codes(infusion.indication))


def _audit(action: str, review: SignalReview, by, changes: dict) -> None:
    audit_write(
        action,
        by=by,
        object_type="signal_review",
        object_id=str(review.pk),
        patient_id=review.patient_id,
        changes=changes,
    )


def _review_for(infusion: Infusion, raised: RaisedSignal, now: dt.datetime) -> tuple[SignalReview, bool]:
    """The patient's unresolved review of this kind, locked, or a new one (the partial unique key settles races)."""
    patient_id = infusion.patient_id
    existing = SignalReview.objects.select_for_update().filter(
        patient_id=patient_id, kind=raised.kind, status__in=UNRESOLVED_STATUSES
    )
    review = existing.first()
    if review is not None:
        return review, False
    try:
        with transaction.atomic():
            review = SignalReview.objects.create(
                patient_id=patient_id,
                infusion=infusion,
                kind=raised.kind,
                label=raised.label[:120],
                priority=raised.priority,
                suggested_type=raised.malignancy_type or "",
                opened_at=now,
                first_observed_on=raised.observed_on,
                last_observed_on=raised.observed_on,
            )
    except IntegrityError:  # another import opened it first
        return existing.get(), False
    return review, True


def signals_record(
    infusion: Infusion,
    records: ClinicalRecords,
    *,
    source: str,
    by=None,
    now: dt.datetime | None = None,
    ruleset: tuple[SignalRuleSet, RuleSet] | None = None,
) -> SignalReport:
    """Evaluate the records after this infusion and record each new signal in its patient's review.

    Idempotent: evidence already recorded for the patient and kind is counted as a duplicate, so re-importing the
    same records changes nothing. Results in units the rules cannot convert, diagnoses without a date, and
    evidence dated after the patient's recorded death (a record that contradicts it) raise nothing and are listed
    in the report (and the audit row) instead. ``ruleset``: ``ruleset_current()``, read once by a caller that
    records for many patients (an import batch); read here if not given.
    """
    now = now or timezone.now()
    stored, rules = ruleset or ruleset_current()
    evaluation = signals_evaluate(rules, infusion_facts(infusion), records)
    report = SignalReport(unconverted=list(evaluation.unconverted), undated=list(evaluation.undated))
    patient = infusion.patient
    died_on = patient.status_date if patient.status == PatientStatus.DECEASED else None
    writes = evaluation.signals or report.unconverted or report.undated  # else no transaction: nothing to write
    with transaction.atomic() if writes else contextlib.nullcontext():
        for raised in evaluation.signals:
            if died_on is not None and raised.observed_on > died_on:
                report.after_death.append(f"{raised.kind} {raised.code} on {raised.observed_on.isoformat()}")
                continue
            if Signal.objects.filter(
                patient_id=infusion.patient_id, kind=raised.kind, evidence_key=raised.key[:255]
            ).exists():
                report.duplicates += 1
                continue
            review, opened = _review_for(infusion, raised, now)
            Signal.objects.create(
                review=review,
                patient_id=infusion.patient_id,
                kind=raised.kind,
                evidence_key=raised.key[:255],
                code=raised.code[:64],
                observed_on=raised.observed_on,
                day=raised.day,
                grade=raised.grade,
                summary=raised.summary[:255],
                source=source[:64],
                ruleset=stored,
            )
            report.raised += 1
            if opened:
                report.reviews_opened.append(review.pk)
                _audit("signal_opened", review, by, {"kind": raised.kind, "source": source, "rules": str(stored)})
                continue
            SignalReview.objects.filter(pk=review.pk).update(
                priority=min(review.priority, raised.priority),
                first_observed_on=min(review.first_observed_on, raised.observed_on),
                last_observed_on=max(review.last_observed_on, raised.observed_on),
            )
            if review.pk not in report.reviews_joined:
                report.reviews_joined.append(review.pk)
            _audit("signal_joined", review, by, {"kind": raised.kind, "source": source, "rules": str(stored)})
        if report.unconverted or report.undated or report.after_death:
            audit_write(
                "signal_skipped",
                by=by,
                object_type="infusion",
                object_id=str(infusion.pk),
                patient_id=infusion.patient_id,
                changes={
                    "unconverted": report.unconverted,
                    "undated": report.undated,
                    "after_death": report.after_death,
                    "source": source,
                },
            )
    logger.info("signals recorded", extra={"infusion_id": infusion.pk, **report.as_dict()})
    return report


# --------------------------------------------------------------------------------------------- decisions
def _decide(
    review: SignalReview, expected: tuple[str, ...], *, action: str, by, now: dt.datetime, changes: dict, **values
) -> SignalReview:
    updated = SignalReview.objects.filter(pk=review.pk, status__in=expected).update(
        decided_at=now, decided_by=by, **values
    )
    if updated != 1:
        raise SignalError(f"signal review {review.pk} has already been decided; reload and try again")
    review.refresh_from_db()
    _audit(action, review, by, {"status": review.status, **changes})
    return review


def signal_review_confirm(
    review: SignalReview,
    *,
    by,
    diagnosis_date: dt.date,
    malignancy_type: str,
    description: str = "",
    now: dt.datetime | None = None,
) -> MalignancyEvent:
    """Confirm a second cancer: the malignancy event and its reporting steps open with the decision, or neither."""
    if by is None:
        raise SignalError("a second cancer is confirmed by a physician")
    infusion = review.infusion
    if malignancy_type not in MalignancyType.values:
        raise SignalError(f"malignancy type must be one of: {', '.join(MalignancyType.values)}")
    if diagnosis_date < infusion.infusion_date:
        raise SignalError("a second cancer is diagnosed on or after the infusion date")
    patient = review.patient
    if patient.status == PatientStatus.DECEASED and patient.status_date and diagnosis_date > patient.status_date:
        raise SignalError("the diagnosis date is after the patient's recorded death")
    with transaction.atomic():
        event = malignancy_event_record(
            infusion,
            diagnosis_date=diagnosis_date,
            malignancy_type=malignancy_type,
            by=by,
            description=description,
        )
        _decide(
            review,
            UNRESOLVED_STATUSES,
            action="signal_confirmed",
            by=by,
            now=now or timezone.now(),
            changes={"malignancy_event": event.pk, "malignancy_type": malignancy_type},
            status=SignalReviewStatus.CONFIRMED,
            malignancy_event=event,
        )
    return event


def signal_review_order_workup(
    review: SignalReview, *, by, items: Iterable[str], note: str = "", now: dt.datetime | None = None
) -> SignalReview:
    """Record the work-up ordered ((b) item 4); the review stays unresolved until its results are in."""
    chosen = sorted(set(items))
    if by is None or not chosen or not set(chosen) <= set(WorkupItem.values):
        raise SignalError(f"order at least one of: {', '.join(WorkupItem.values)}")
    with transaction.atomic():
        return _decide(
            review,
            (SignalReviewStatus.OPEN,),
            action="signal_workup",
            by=by,
            now=now or timezone.now(),
            changes={"workup": chosen},
            status=SignalReviewStatus.WORKUP,
            workup=chosen,
            reason=note.strip()[:500],
        )


def signal_review_dismiss(review: SignalReview, *, by, reason: str, now: dt.datetime | None = None) -> SignalReview:
    """Dismiss with a reason (e.g. explained by infection, known drug effect); a later signal opens a new review."""
    reason = reason.strip()
    if by is None or not reason:
        raise SignalError("a dismissal needs the physician and a reason")
    with transaction.atomic():
        return _decide(
            review,
            UNRESOLVED_STATUSES,
            action="signal_dismissed",
            by=by,
            now=now or timezone.now(),
            changes={"reason": reason[:500]},
            status=SignalReviewStatus.DISMISSED,
            reason=reason[:500],
        )


def signal_reviews_escalate(now: dt.datetime | None = None) -> int:
    """Mark escalated the reviews left open with no decision past ``SIGNAL_ESCALATE_DAYS`` (for the daily sweep).

    Compare-and-set per review, so a sweep running twice, or a decision landing meanwhile, escalates nothing twice.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.CARTWATCH["SIGNAL_ESCALATE_DAYS"])
    escalated = 0
    for review in SignalReview.objects.escalation_due(cutoff).only("pk", "patient_id", "kind"):
        with transaction.atomic():
            if SignalReview.objects.escalation_due(cutoff).filter(pk=review.pk).update(escalated_at=now) != 1:
                continue
            _audit("signal_escalated", review, None, {"kind": review.kind})
            escalated += 1
    return escalated
