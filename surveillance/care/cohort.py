"""Figures of a centre's cohort for the dashboard: plain functions over scoped querysets, a few queries each.

Every function takes the querysets already restricted to the user's centres (``tenancy.scope``), so a figure
can never count another centre's patients.

The cumulative incidence of second cancers is the Aalen-Johansen estimate with death as a competing risk: each
infusion is followed from its date until its first confirmed malignancy (the event), the patient's death (the
competing event: a patient who died can no longer develop a second cancer), or until follow-up stopped (censored:
today, the day the patient's follow-up was withdrawn, transferred or lost, or a re-infusion). One minus
Kaplan-Meier would censor the deaths instead and so overstate the incidence in a cohort with many deaths; without
deaths the two agree.
"""

from __future__ import annotations

import datetime as dt
import statistics
import zoneinfo
from dataclasses import dataclass, field
from enum import StrEnum

from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from surveillance.models import FollowUpVisit, Infusion, Patient, ProtocolRule, Reminder, SignalReview, VisitStatus
from surveillance.models.patients import CLOSED_STATUSES, LadderStage, PatientStatus
from surveillance.models.reminders import ReminderStatus
from surveillance.models.signals import SignalReviewStatus
from surveillance.models.visits import OPEN_DUE

DAYS_PER_MONTH = 365.25 / 12
_UNIT_DAYS = {"day": 1.0, "month": DAYS_PER_MONTH, "year": 365.25}

#: Published reference points (clinical reference, "Suggested dashboard reference lines"): months -> percent.
REFERENCE_LINES = (
    (_("Any second cancer, Stanford (NEJM 2024)"), ((0, 0.0), (12, 2.0), (36, 6.5))),
    (_("Higher-risk lymphoma cohort, MSK (TCT 2024)"), ((0, 0.0), (36, 14.0))),
)


@dataclass(frozen=True)
class TimePointAdherence:
    rule_code: str
    label: str
    settled: int  # visits whose window has closed, completed or missed (cancelled ones do not count)
    completed: int
    in_window: int  # completed on a day inside the window

    @property
    def share(self) -> float:
        return self.in_window / self.settled if self.settled else 0.0


def cohort_adherence(visits: QuerySet, today: dt.date) -> list[TimePointAdherence]:
    """Share of visits completed within their window, by time point (rule code), in protocol order."""
    rows = (
        visits.filter(window_end__lt=today, status__in=[VisitStatus.COMPLETED, VisitStatus.MISSED])
        .values("rule_code")
        .annotate(
            settled=Count("id"),
            completed=Count("id", filter=Q(status=VisitStatus.COMPLETED)),
            in_window=Count(
                "id",
                filter=Q(
                    status=VisitStatus.COMPLETED,
                    completed_on__gte=F("window_start"),
                    completed_on__lte=F("window_end"),
                ),
            ),
        )
    )
    order, labels = _rule_order()
    result = [
        TimePointAdherence(r["rule_code"], labels.get(r["rule_code"], r["rule_code"]), **_counts(r)) for r in rows
    ]
    return sorted(result, key=lambda a: (order.get(a.rule_code, 1e9), a.rule_code))


def _counts(row: dict) -> dict:
    return {k: row[k] for k in ("settled", "completed", "in_window")}


def _rule_order() -> tuple[dict[str, float], dict[str, str]]:
    """Approximate first offset in days of each rule code, across protocol versions (for ordering only)."""
    order: dict[str, float] = {}
    labels: dict[str, str] = {}
    for code, amount, unit, label in ProtocolRule.objects.values_list("code", "offset_amount", "offset_unit", "label"):
        days = amount * _UNIT_DAYS.get(unit, 1.0)
        if code not in order or days < order[code]:
            order[code], labels[code] = days, label
    return order, labels


@dataclass(frozen=True)
class WeekLoad:
    week_start: dt.date
    visits: int


def cohort_workload(visits: QuerySet, today: dt.date, weeks: int = 12) -> list[WeekLoad]:
    """Scheduled visits due in each of the next ``weeks`` weeks (weeks start on Monday, this week first)."""
    start = today - dt.timedelta(days=today.weekday())
    end = start + dt.timedelta(weeks=weeks)
    counts = [0] * weeks
    # counted by the open visit's due date (``OPEN_DUE``: set for scheduled visits alone), a range of its index, as
    # the worklists read it
    rows = (
        visits.annotate(open_due=OPEN_DUE)
        .filter(open_due__gte=start, open_due__lt=end)
        .values("open_due")
        .annotate(n=Count("id"))
    )
    for row in rows:
        counts[(row["open_due"] - start).days // 7] += row["n"]
    return [WeekLoad(start + dt.timedelta(weeks=i), n) for i, n in enumerate(counts)]


def cohort_patients_by_status(patients: QuerySet) -> dict[str, int]:
    """Patients by follow-up status, and active patients by lost-to-follow-up ladder stage (keys ``ladder:``)."""
    result = {status: 0 for status in PatientStatus.values}
    for row in patients.values("status").annotate(n=Count("id")):
        result[row["status"]] = row["n"]
    ladder = (
        patients.filter(status=PatientStatus.ACTIVE)
        .exclude(ladder_stage=LadderStage.ON_TRACK)
        .values("ladder_stage")
        .annotate(n=Count("id"))
    )
    for row in ladder:
        result[f"ladder:{row['ladder_stage']}"] = row["n"]
    return result


def cohort_reminder_outcomes(reminders: QuerySet) -> dict[str, int]:
    """Reminders by outcome (sent, failed, skipped, cancelled, still pending or in flight)."""
    result = {status: 0 for status in ReminderStatus.values}
    for row in reminders.values("status").annotate(n=Count("id")):
        result[row["status"]] = row["n"]
    return result


@dataclass(frozen=True)
class SignalKindFigures:
    """One kind of second-cancer signal: its reviews by outcome, and how long they took to be decided.

    ``days_to_review`` runs from the result that raised the signal (its date in the EHR) to the physician's
    decision, so it counts both the time the result took to reach the service and the time it waited on the
    worklist; ``days_on_worklist`` is the second part alone. Both are medians over decided reviews (None: none
    decided yet). ``oldest_open_days`` is how long the oldest undecided review has waited.
    """

    kind: str
    label: str
    by_status: dict[str, int]
    days_to_review: float | None
    days_on_worklist: float | None
    oldest_open_days: int | None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def counts(self) -> list[int]:
        """The counts in the order of ``SignalReviewStatus`` (the dashboard's columns)."""
        return [self.by_status[s] for s in SignalReviewStatus.values]


def _centre_date(moment: dt.datetime, zone: str) -> dt.date:
    """The calendar day of ``moment`` at the centre: result dates and ``today`` are the centre's days, so a
    decision taken in the centre's evening must not count as the next (UTC) day."""
    return timezone.localdate(moment, zoneinfo.ZoneInfo(zone))


def cohort_signal_reviews(reviews: QuerySet, today: dt.date) -> list[SignalKindFigures]:
    """Signal reviews by kind and outcome, with the median time from result to decision, most reviews first.

    One query over the reviews' dates; the medians are taken here because SQLite has no percentile function and
    the reviews of a cohort number in the hundreds at most.
    """
    by_kind: dict[str, dict] = {}
    rows = reviews.values_list(
        "kind", "label", "status", "first_observed_on", "opened_at", "decided_at", "patient__centre__time_zone"
    )
    for kind, label, status, observed_on, opened_at, decided_at, zone in rows.order_by("kind", "opened_at"):
        entry = by_kind.setdefault(
            kind, {"label": label, "by_status": dict.fromkeys(SignalReviewStatus.values, 0), "review": [], "wait": []}
        )
        entry["by_status"][status] += 1
        if decided_at is not None:
            entry["review"].append((_centre_date(decided_at, zone) - observed_on).days)
            entry["wait"].append((decided_at - opened_at).total_seconds() / 86400)
        else:
            entry.setdefault("oldest", (today - _centre_date(opened_at, zone)).days)
    figures = [
        SignalKindFigures(
            kind=kind,
            label=entry["label"],
            by_status=entry["by_status"],
            days_to_review=statistics.median(entry["review"]) if entry["review"] else None,
            days_on_worklist=round(statistics.median(entry["wait"]), 1) if entry["wait"] else None,
            oldest_open_days=entry.get("oldest"),
        )
        for kind, entry in by_kind.items()
    ]
    return sorted(figures, key=lambda f: (-f.total, f.kind))


class Outcome(StrEnum):
    """How the follow-up of one infusion ended, for the incidence estimate."""

    SECOND_CANCER = "second_cancer"
    DEATH = "death"
    CENSORED = "censored"


@dataclass
class Incidence:
    """Cumulative incidence: ``steps`` are (month, percent) after each event time; ``at`` gives chosen months."""

    infusions: int
    events: int
    steps: list[tuple[float, float]] = field(default_factory=list)
    at: dict[int, float] = field(default_factory=dict)
    at_risk: dict[int, int] = field(default_factory=dict)
    max_months: float = 0.0


def cohort_second_cancer_incidence(
    infusions: QuerySet, today: dt.date, report_months: tuple[int, ...] = (12, 36, 60)
) -> Incidence:
    """Cumulative incidence of a first confirmed second cancer by time since infusion (see module notes)."""
    rows = infusions.filter(infusion_date__lte=today).values(
        "pk",
        "infusion_date",
        "patient__status",
        "patient__status_date",
        "superseded_by__infusion_date",
    )
    rows = rows.annotate(
        first_event=Min("malignancy_events__diagnosis_date", filter=Q(malignancy_events__confirmed=True))
    )
    times: list[tuple[int, Outcome]] = []
    for r in rows:
        event = r["first_event"]
        if event is not None and event <= today:
            times.append((max((event - r["infusion_date"]).days, 0), Outcome.SECOND_CANCER))
            continue
        end, outcome = today, Outcome.CENSORED
        if r["superseded_by__infusion_date"]:
            end = min(end, r["superseded_by__infusion_date"])
        closed_on = r["patient__status_date"]
        if r["patient__status"] != PatientStatus.ACTIVE and closed_on and closed_on <= end:
            end = closed_on
            outcome = Outcome.DEATH if r["patient__status"] == PatientStatus.DECEASED else Outcome.CENSORED
        times.append((max((end - r["infusion_date"]).days, 0), outcome))
    return incidence_aj(times, report_months)


def incidence_aj(times: list[tuple[int, Outcome]], report_months: tuple[int, ...] = (12, 36, 60)) -> Incidence:
    """Aalen-Johansen cumulative incidence of second cancers from (days, outcome) pairs, death competing.

    At each day with events: the incidence grows by S(t-) x second cancers / at risk, where S is the probability of
    being alive without a second cancer (it falls with both kinds of event); censorings that day leave the risk
    set after the events, as in Kaplan-Meier.
    """
    result = Incidence(infusions=len(times), events=sum(1 for _, o in times if o == Outcome.SECOND_CANCER))
    ordered = sorted(times, key=lambda t: t[0])
    at_risk = len(ordered)
    event_free = 1.0
    incidence = 0.0
    i = 0
    curve: list[tuple[float, float]] = []
    while i < len(ordered):
        day = ordered[i][0]
        counts = dict.fromkeys(Outcome, 0)
        while i < len(ordered) and ordered[i][0] == day:
            counts[ordered[i][1]] += 1
            i += 1
        cancers, deaths = counts[Outcome.SECOND_CANCER], counts[Outcome.DEATH]
        if cancers:
            incidence += event_free * cancers / at_risk
            curve.append((day / DAYS_PER_MONTH, round(100 * incidence, 2)))
        if cancers or deaths:
            event_free *= 1 - (cancers + deaths) / at_risk
        at_risk -= cancers + deaths + counts[Outcome.CENSORED]
    result.steps = curve
    result.max_months = max((d for d, _ in times), default=0) / DAYS_PER_MONTH
    for month in report_months:
        value = 0.0
        for m, pct in curve:
            if m <= month:
                value = pct
        if month <= result.max_months:
            result.at[month] = value
        result.at_risk[month] = sum(1 for d, _ in times if d / DAYS_PER_MONTH >= month)
    return result


@dataclass
class CohortFigures:
    adherence: list[TimePointAdherence]
    workload: list[WeekLoad]
    patients_by_status: dict[str, int]
    reminder_outcomes: dict[str, int]
    signal_reviews: list[SignalKindFigures]
    incidence: Incidence


def cohort_figures(centre_ids: list[int] | None, today: dt.date) -> CohortFigures:
    """Every dashboard figure for the given centres (``None``: all centres)."""
    patients = Patient.objects.all()
    visits = FollowUpVisit.objects.all()
    reminders = Reminder.objects.all()
    infusions = Infusion.objects.all()
    reviews = SignalReview.objects.all()
    if centre_ids is not None:
        patients = patients.filter(centre_id__in=centre_ids)
        visits = visits.filter(infusion__patient__centre_id__in=centre_ids)
        reminders = reminders.filter(visit__infusion__patient__centre_id__in=centre_ids)
        infusions = infusions.filter(patient__centre_id__in=centre_ids)
        reviews = reviews.filter(patient__centre_id__in=centre_ids)
    return CohortFigures(
        adherence=cohort_adherence(visits, today),
        workload=cohort_workload(visits.exclude(infusion__patient__status__in=CLOSED_STATUSES), today),
        patients_by_status=cohort_patients_by_status(patients),
        reminder_outcomes=cohort_reminder_outcomes(reminders),
        signal_reviews=cohort_signal_reviews(reviews, today),
        incidence=cohort_second_cancer_incidence(infusions, today),
    )
