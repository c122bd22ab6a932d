"""Visits reconciled from what the EHR already knows: its encounters, appointments and results.

A coordinator should not have to type in that a visit happened when the hospital's own record says so. The rules
(``reconcile_decide`` is pure: the same facts always give the same plan):

- **A finished Encounter at the patient's centre, dated inside an open visit's window, marks the visit completed**
  on the encounter's day, with the encounter's id as its source. *At the centre* means: one of the encounter's
  ``serviceProvider`` or ``location`` identifiers (``system|value``, the value alone, or the reference's id) is
  among the centre's EHR site identifiers (set on the centre in the admin). Failing that — the centre lists none,
  or the encounter names no site — the encounter counts when it comes from the patient's own source system (its
  own source, else the source of the Patient it names, is the patient's ``source_system``). An encounter naming
  a site the centre does not list happened elsewhere and changes nothing.
- Only a scheduled or not-yet-recorded visit, or one the daily sweep (not a person) marked missed, is completed
  this way; a visit a person completed, missed or cancelled stays as it is, and so does one whose EHR completion a
  coordinator undid for that same encounter.
  Encounters outside every open window, not finished, or dated after today change nothing. When windows overlap,
  the visit whose due date is nearest takes the encounter; each encounter completes one visit at most.
- **Observations dated inside a visit's window fill its results** (``care.results``, source EHR):
  the analytes of ``seeds/analytes.yaml`` by LOINC (blood counts, IgG, lymphocyte subsets, CRP, ferritin, LDH,
  EBV load), under the first assessment the visit asks for that takes the analyte, the latest result of an
  analyte standing. Scheduled, not-yet-recorded and completed
  visits take results; a result a person recorded is never replaced; a result in a unit that cannot be read is
  left out and counted.
- **A booked Appointment inside a scheduled visit's window, from today on, books the visit for its day** (and
  its hours, when it gives a start time with its offset); the patient's reminders then say "see you on <day>" and
  their calendar entry is confirmed for that day or those hours. A cancelled (or no-show) appointment that had
  booked the visit takes the booking back.

``reconcile_from_ehr`` applies the plans of an import batch's patients through the lifecycle's transitions (the
completions of them all at once, ``lifecycle.visits_complete_from_ehr``), so each change is compare-and-set,
audited, and emits what the transition emits. A visit someone else changed meanwhile is left as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from surveillance.care import lifecycle
from surveillance.care.results import ResultEntry, ResultsRefused, result_units, results_check, results_write
from surveillance.models import FollowUpVisit, Infusion, Patient, ResultSource, VisitStatus
from surveillance.seeds.analytes import analyte_for_loinc
from surveillance.signals.rules import LabResult

FINISHED = "finished"
BOOKED = "booked"
BOOKING_ENDED = frozenset({"cancelled", "noshow", "entered-in-error"})
#: Visits an encounter may complete, and visits results may be added to.
COMPLETABLE = frozenset({VisitStatus.SCHEDULED, VisitStatus.UNRECORDED})
TAKES_RESULTS = COMPLETABLE | {VisitStatus.COMPLETED}
#: Patients whose visits are read in one query (a condition each): an NDJSON batch's in one, a large Bundle's in a few.
REACH_CHUNK = 500


# --------------------------------------------------------------------------------------------- facts
@dataclass(frozen=True, slots=True)
class Encounter:
    source_id: str
    status: str
    on: dt.date | None
    sites: frozenset[str]  # the identifiers of its serviceProvider and locations, in every form they match by
    source: str  # the system it comes from (its own, else its Patient's)


@dataclass(frozen=True, slots=True)
class Appointment:
    source_id: str
    status: str
    on: dt.date | None
    start: dt.datetime | None = None  # its hours, when it gave a time with its offset
    end: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Booking:
    """A visit booked for an appointment's day (and hours, when it gave them), or its booking taken back (``on``
    None)."""

    visit: int
    source_id: str
    on: dt.date | None
    start: dt.datetime | None = None
    end: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class VisitState:
    pk: int
    status: str
    due_date: dt.date
    window_start: dt.date
    window_end: dt.date
    assessments: tuple[str, ...]
    ehr_completion_undone: str = ""
    booked_for: dt.date | None = None
    booked_source: str = ""
    booked_start: dt.datetime | None = None
    booked_end: dt.datetime | None = None
    settled_by_person: bool = False  # its status was last set by a person (not the sweep, not an import)

    def contains(self, day: dt.date) -> bool:
        return self.window_start <= day <= self.window_end

    @property
    def completable(self) -> bool:
        """Whether an encounter may record it done: open, or missed by the sweep rather than by a person."""
        return self.status in COMPLETABLE or (self.status == VisitStatus.MISSED and not self.settled_by_person)


@dataclass(frozen=True, slots=True)
class Site:
    """Where the patient is followed: the centre's EHR site identifiers and the patient's source system."""

    identifiers: frozenset[str]
    patient_source: str

    def holds(self, encounter: Encounter) -> bool:
        if self.identifiers and encounter.sites:
            return bool(self.identifiers & encounter.sites)
        return bool(self.patient_source) and encounter.source == self.patient_source


@dataclass
class Plan:
    completions: list[tuple[int, str, dt.date]] = field(default_factory=list)  # visit, encounter id, day
    bookings: list[Booking] = field(default_factory=list)
    results: dict[int, list[ResultEntry]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- reading
def _day(value: Any) -> dt.date | None:
    """The calendar day of a FHIR date/dateTime/instant as written (in its own offset); None when partial."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _site_names(reference: Any) -> set[str]:
    """Every form an Organization or Location reference can be matched by."""
    if not isinstance(reference, dict):
        return set()
    names: set[str] = set()
    identifier = reference.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        value = str(identifier["value"])
        names |= {value, f"{identifier.get('system') or ''}|{value}"}
    target = reference.get("reference")
    if isinstance(target, str) and target:
        if "?identifier=" in target:  # a conditional reference, as Synthea writes them
            token = target.split("?identifier=", 1)[1]
            names |= {token, token.rsplit("|", 1)[-1]}
        else:
            names |= {target, target.rstrip("/").rsplit("/", 1)[-1]}
    return names


def encounter_read(resource: Mapping[str, Any], source: str) -> Encounter:
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    places = [resource.get("serviceProvider")]
    places += [item.get("location") for item in resource.get("location") or [] if isinstance(item, dict)]
    sites = set().union(*(_site_names(place) for place in places))
    identity, status = str(resource.get("id") or ""), str(resource.get("status") or "")
    return Encounter(identity, status, _day(period.get("start")), frozenset(sites), source)


def _instant(value: Any) -> dt.datetime | None:
    """A FHIR instant (a time of day with its offset); None for a date alone, a time with no offset, or junk."""
    if not isinstance(value, str) or len(value) <= 10:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def appointment_read(resource: Mapping[str, Any]) -> Appointment:
    """An Appointment's day, and its hours when it gives them: its ``end``, else its ``minutesDuration``."""
    start, end = _instant(resource.get("start")), _instant(resource.get("end"))
    minutes = resource.get("minutesDuration")
    if start is not None and end is None and isinstance(minutes, int) and not isinstance(minutes, bool):
        end = start + dt.timedelta(minutes=minutes) if 0 < minutes <= 24 * 60 else None
    if start is None or (end is not None and end < start):
        end = None
    identity, status = str(resource.get("id") or ""), str(resource.get("status") or "")
    return Appointment(identity, status, _day(resource.get("start")), start, end)


# --------------------------------------------------------------------------------------------- deciding
def _nearest(visits: Iterable[VisitState], day: dt.date) -> VisitState | None:
    return min(
        (visit for visit in visits if visit.contains(day)),
        key=lambda visit: (abs((visit.due_date - day).days), visit.due_date),
        default=None,
    )


def _completions(
    visits: Sequence[VisitState], encounters: Iterable[Encounter], site: Site, today: dt.date, plan: Plan
) -> set[int]:
    """Each finished encounter at the site completes the open visit nearest to it; returns the visits completed."""
    taken: set[int] = set()
    for encounter in sorted(encounters, key=lambda e: (e.on or dt.date.max, e.source_id)):
        if encounter.status != FINISHED or encounter.on is None or encounter.on > today or not site.holds(encounter):
            continue
        open_visits = [
            v for v in visits if v.completable and v.pk not in taken and v.ehr_completion_undone != encounter.source_id
        ]
        visit = _nearest(open_visits, encounter.on)
        if visit is not None:
            taken.add(visit.pk)
            plan.completions.append((visit.pk, encounter.source_id, encounter.on))
    return taken


def _bookings(visits: Sequence[VisitState], appointments: Iterable[Appointment], today: dt.date, plan: Plan) -> None:
    booked: set[int] = set()
    for appointment in sorted(appointments, key=lambda a: (a.on or dt.date.max, a.source_id)):
        if appointment.status in BOOKING_ENDED:
            plan.bookings += [
                Booking(v.pk, appointment.source_id, None)
                for v in visits
                if v.status == VisitStatus.SCHEDULED and v.booked_source == appointment.source_id
            ]
            continue
        if appointment.status != BOOKED or appointment.on is None or appointment.on < today:
            continue
        scheduled = [v for v in visits if v.status == VisitStatus.SCHEDULED and v.pk not in booked]
        visit = _nearest(scheduled, appointment.on)
        if visit is None:
            continue
        booked.add(visit.pk)
        booking = Booking(visit.pk, appointment.source_id, appointment.on, appointment.start, appointment.end)
        if (visit.booked_for, visit.booked_source, visit.booked_start, visit.booked_end) != (
            booking.on,
            booking.source_id,
            booking.start,
            booking.end,
        ):
            plan.bookings.append(booking)


def _results(visits: Sequence[VisitState], labs: Iterable[LabResult], completing: set[int], plan: Plan) -> None:
    latest: dict[tuple[int, str], tuple[LabResult, str]] = {}
    takers: dict[str, list[VisitState]] = {}  # analyte -> the visits that take it (a blood count: seven labs a day)
    for lab in sorted(labs, key=lambda r: (r.effective, r.reference)):
        analyte = analyte_for_loinc(lab.loinc)
        if analyte is None:
            continue
        candidates = takers.get(analyte.code)
        if candidates is None:
            candidates = takers[analyte.code] = [
                v
                for v in visits
                if (v.status in TAKES_RESULTS or v.pk in completing) and analyte.assessment_of(v.assessments)
            ]
        visit = _nearest(candidates, lab.effective)
        if visit is not None:
            latest[(visit.pk, analyte.code)] = (lab, analyte.assessment_of(visit.assessments) or "")
    for (visit_pk, analyte_code), (lab, assessment) in latest.items():
        entry = ResultEntry(
            assessment,
            outcome=lab.interpretation,
            analyte=analyte_code,
            loinc=lab.loinc,
            value=lab.value,
            unit=lab.unit,
            reference_low=lab.reference_low,
            reference_high=lab.reference_high,
            effective_on=lab.effective,
            source_id=lab.reference or f"Observation@{lab.effective.isoformat()}",
        )
        plan.results.setdefault(visit_pk, []).append(entry)


def reconcile_decide(
    visits: Sequence[VisitState],
    encounters: Iterable[Encounter],
    appointments: Iterable[Appointment],
    labs: Iterable[LabResult],
    *,
    site: Site,
    today: dt.date,
) -> Plan:
    """What the EHR's records say of the visits (see the module's docstring); nothing is read or written here."""
    plan = Plan()
    completing = _completions(visits, encounters, site, today, plan)
    _bookings([v for v in visits if v.pk not in completing], appointments, today, plan)
    _results(visits, labs, completing, plan)
    return plan


# --------------------------------------------------------------------------------------------- applying
@dataclass
class ReconcileReport:
    """What one patient's reconciliation did, in counts (safe to log)."""

    completed: int = 0
    booked: int = 0
    results_recorded: int = 0
    results_kept_person: int = 0
    results_unreadable: int = 0
    lost_races: int = 0


def _state(visit: FollowUpVisit) -> VisitState:
    return VisitState(
        visit.pk,
        visit.status,
        visit.due_date,
        visit.window_start,
        visit.window_end,
        tuple(visit.assessments or ()),
        visit.ehr_completion_undone,
        visit.booked_for,
        visit.booked_source,
        visit.booked_start,
        visit.booked_end,
        visit.status_changed_by_id is not None,
    )


def _results_checked(
    visit: FollowUpVisit, entries: list[ResultEntry], report: ReconcileReport, units: Mapping
) -> list[ResultEntry]:
    """The EHR's results as they will be stored; those refused (a unit that cannot be read) left out and counted."""
    try:
        return results_check(visit, entries, ResultSource.EHR, units)
    except ResultsRefused as refused:
        bad = {int(where.partition(".")[0]) for where in refused.problems}
        report.results_unreadable += len(bad)
        kept = [entry for index, entry in enumerate(entries) if index not in bad]
        return results_check(visit, kept, ResultSource.EHR, units) if kept else []


@dataclass(frozen=True, slots=True)
class PatientRecords:
    """What an import sent about one patient: the ``ClinicalResource`` items and the blood results read from them;
    ``infusion`` is the patient's current infusion (the latest not superseded), whose visits are reconciled."""

    patient: Patient
    infusion: Infusion
    resources: Sequence[Any]
    labs: Sequence[LabResult]


def reconcile_from_ehr(
    batch: Sequence[PatientRecords], *, sender: str = "", now: dt.datetime | None = None
) -> list[ReconcileReport]:
    """Reconcile each patient's current visits with the Encounters and Appointments among their resources (the
    import's ``ClinicalResource`` items) and with the blood results read from them; a report for each. ``sender``
    is the import's declared source system: the source of a resource that states none, as for a Patient.

    A whole import batch at once: the visits the records can reach read together (``_reachable``), each
    patient's plan decided on its own, then the completions of them all applied together
    (``lifecycle.visits_complete_from_ehr``) and their results recorded together (``results.results_write``)."""
    if not batch:
        return []
    now = now or timezone.now()
    reports = [ReconcileReport() for _ in batch]
    facts = [_facts(item, sender) for item in batch]
    visits: dict[int, FollowUpVisit] = {}
    by_infusion: dict[int, list[FollowUpVisit]] = {}
    infusions = {item.infusion.pk: item.infusion for item in batch}
    for start in range(0, len(batch), REACH_CHUNK):
        reach = _reachable(batch[start : start + REACH_CHUNK], facts[start : start + REACH_CHUNK])
        for visit in FollowUpVisit.objects.filter(reach):
            visit.infusion = infusions[visit.infusion_id]  # with its patient: read once for all its visits
            visits[visit.pk] = visit
            by_infusion.setdefault(visit.infusion_id, []).append(visit)
    plans = [
        _plan_for(item, by_infusion.get(item.infusion.pk, []), encounters, appointments, now)
        for item, (encounters, appointments) in zip(batch, facts, strict=True)
    ]
    with transaction.atomic():
        completions = [(visits[pk], encounter_id, day) for plan in plans for pk, encounter_id, day in plan.completions]
        completed = lifecycle.visits_complete_from_ehr(completions, now=now)
        for plan, report in zip(plans, reports, strict=True):
            report.completed = sum(pk in completed for pk, _, _ in plan.completions)
            report.lost_races = len(plan.completions) - report.completed
            for booking in plan.bookings:
                try:
                    visits[booking.visit] = lifecycle.visit_book(
                        visits[booking.visit],
                        on=booking.on,
                        source=booking.source_id,
                        start=booking.start,
                        end=booking.end,
                        now=now,
                    )
                    report.booked += booking.on is not None
                except lifecycle.TransitionError:
                    report.lost_races += 1
        units = result_units() if any(plan.results for plan in plans) else {}
        checked = [
            (visits[pk], _results_checked(visits[pk], entries, report, units), report)
            for plan, report in zip(plans, reports, strict=True)
            for pk, entries in plan.results.items()
        ]
        checked = [item for item in checked if item[1]]
        written = results_write([(visit, entries) for visit, entries, _ in checked], source=ResultSource.EHR)
        for (_, _, report), outcome in zip(checked, written, strict=True):
            report.results_recorded += outcome.written
            report.results_kept_person += outcome.kept_person
    return reports


def _facts(item: PatientRecords, sender: str) -> tuple[list[Encounter], list[Appointment]]:
    """The Encounters and Appointments among a patient's resources, read."""
    encounters, appointments = [], []
    for resource in item.resources:
        if resource.resource_type == "Encounter":
            source = resource.source or resource.patient_source or sender
            encounters.append(encounter_read(resource.resource, source))
        elif resource.resource_type == "Appointment":
            appointments.append(appointment_read(resource.resource))
    return encounters, appointments


def _reachable(batch: Sequence[PatientRecords], facts: Sequence[tuple[list[Encounter], list[Appointment]]]) -> Q:
    """The visits of the batch's infusions that the records can change: those whose window holds a day between
    the patient's first and last dated record (an encounter, appointment or result only ever reaches a visit whose
    window holds its day), and those booked by an appointment (its cancellation takes the booking back, wherever
    the visit's window is). The rest are left unread: a patient has decades of visits, an export a few of them."""
    reach = Q(infusion__in=[item.infusion.pk for item in batch]) & ~Q(booked_source="")
    for item, (encounters, appointments) in zip(batch, facts, strict=True):
        days = (
            [e.on for e in encounters if e.on] + [a.on for a in appointments if a.on] + [r.effective for r in item.labs]
        )
        if days:
            reach |= Q(infusion=item.infusion.pk, window_start__lte=max(days), window_end__gte=min(days))
    return reach


def _plan_for(
    item: PatientRecords,
    visits: list[FollowUpVisit],
    encounters: list[Encounter],
    appointments: list[Appointment],
    now: dt.datetime,
) -> Plan:
    centre = item.patient.centre
    return reconcile_decide(
        [_state(v) for v in visits],
        encounters,
        appointments,
        item.labs,
        site=Site(centre.ehr_identifiers(), item.patient.source_system),
        today=timezone.localdate(now, centre.tz),
    )
