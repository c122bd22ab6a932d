"""Export schedules for the EHR: a FHIR CarePlan with Appointments, CSV, iCalendar feeds, bulk NDJSON.

Exports carry the schedule and ids, not demographics: the patient is referred to by the EHR's own id when it came
from an import (``Patient/<source id>``), otherwise by this service's id as an identifier. Calendar entries use the
visit's stable UID and its SEQUENCE, so a subscribed calendar updates an entry when a visit moves.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import icalendar
from django.conf import settings
from django.db import connections, router
from django.http import Http404
from django.utils import timezone

from surveillance.access.tenancy import user_centre_ids
from surveillance.models import FollowUpVisit, Infusion, Patient, PatientStatus, VisitStatus
from surveillance.models.visits import PLAN_DATE_FIELDS
from surveillance.seeds.labels import label

PATIENT_ID_SYSTEM = "urn:cartwatch:patient"
VISIT_ID_SYSTEM = "urn:cartwatch:visit"
DUE_DATE_EXTENSION = f"{settings.SITE_URL}/fhir/StructureDefinition/visit-due-date"
PRODID = "-//CAR-T Watch//Follow-up schedule//EN"
#: A centre's calendar feed covers a bounded window (its work grows with the window, not with the cohort's
#: history): by default from a month back, for the visits still being arranged, to six months ahead.
CALENDAR_DAYS_BACK = 30
CALENDAR_DAYS_AHEAD = 180
#: The longest window a feed request may ask for: a little over a year.
CALENDAR_MAX_DAYS = 400

CSV_COLUMNS = (
    "visit_id",
    "patient_id",
    "patient_source_system",
    "patient_source_id",
    "infusion_id",
    "rule_code",
    "occurrence",
    "label",
    "kind",
    *PLAN_DATE_FIELDS,
    "status",
    "completed_on",
    "sequence",
    "assessments",
)


class CarePlanPatient(NamedTuple):
    """What a CarePlan shows of its patient (named as on a ``Patient``, which serves as well)."""

    pk: int
    source_id: str
    status: str


class CarePlanVisit(NamedTuple):
    """What a CarePlan shows of a visit."""

    id: int
    infusion_id: int
    rule_code: str
    occurrence: int
    label: str
    due_date: dt.date
    window_start: dt.date
    window_end: dt.date
    status: str
    completed_on: dt.date | None


_ACTIVITY_STATUS = {
    VisitStatus.SCHEDULED: "scheduled",
    VisitStatus.COMPLETED: "completed",
    VisitStatus.MISSED: "stopped",
    VisitStatus.CANCELLED: "cancelled",
    VisitStatus.UNRECORDED: "unknown",  # its window closed before it was planned here, its outcome not yet told
}
_CAREPLAN_STATUS = {
    PatientStatus.ACTIVE: "active",
    PatientStatus.LOST: "active",
    PatientStatus.DECEASED: "completed",
    PatientStatus.WITHDRAWN: "revoked",
    PatientStatus.TRANSFERRED: "completed",
}


#: A FHIR resource id (R4 ``id`` datatype): what may follow ``Patient/`` in a literal reference.
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def patient_reference(patient: Patient | CarePlanPatient) -> dict:
    """The EHR's own Patient id when it has one that is a FHIR id; else our identifier (a logical reference).

    An import of a Bundle whose entries had no id keeps the entry's ``urn:uuid:`` fullUrl as source id: that only
    names the patient inside the sender's Bundle, and ``Patient/urn:uuid:...`` is no valid reference at all.
    """
    if FHIR_ID.fullmatch(patient.source_id):
        return {"reference": f"Patient/{patient.source_id}"}
    return {"identifier": {"system": PATIENT_ID_SYSTEM, "value": str(patient.pk)}}


def schedule_visits(patient: Patient):
    """The patient's visits in date order, the infusion and centre joined (one query)."""
    return (
        FollowUpVisit.objects.filter(infusion__patient=patient)
        .select_related("infusion__patient__centre")
        .order_by("due_date", "rule_code", "occurrence")
    )


def careplan_read(user, pk) -> tuple[CarePlanPatient, list[CarePlanVisit]]:
    """The patient ``pk``, if ``user`` may see it (``tenancy.user_centre_ids``), and the visits of its infusions in
    date order: one query, its SQL written once (``_careplan_sql``), each visit's row carrying the patient's columns
    (a patient without visits has one row, its visit columns empty). A patient the user may not see, or an id that
    is none, is a 404 as ``get_object`` answers it.

    A CarePlan is what an EHR asks for, patient after patient: reading the patient and its ~45 visits apart, as
    model instances, took half of the request, and building the one query with the ORM still took three times as
    long as running it.
    """
    try:
        pk = int(pk)
    except (TypeError, ValueError):  # not an id at all, as DRF's get_object_or_404 answers it
        raise Http404 from None
    centre_ids = user_centre_ids(user)
    rows = []
    if -(2**63) <= pk < 2**63 and centre_ids != []:  # an id beyond the column's range is no patient's
        alias = router.db_for_read(Patient)
        sql = _careplan_sql(alias, None if centre_ids is None else len(centre_ids))
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [pk, *(centre_ids or ())])
            rows = cursor.fetchall()
    if not rows:
        raise Http404(f"No {Patient._meta.object_name} matches the given query.")
    split = len(CarePlanPatient._fields)
    visits = [CarePlanVisit(*row[split:]) for row in rows if row[split] is not None]
    return CarePlanPatient(*rows[0][:split]), visits


@functools.cache
def _careplan_sql(alias: str, centres: int | None) -> str:
    """``careplan_read``'s query on database ``alias``, its tables and columns named from the models: the patient
    (among as many centres as ``centres`` says, or any) with its infusions' visits joined."""
    patient, infusion, visit = Patient._meta, Infusion._meta, FollowUpVisit._meta
    quote = connections[alias].ops.quote_name

    def column(meta, table: str, name: str) -> str:
        return f"{table}.{quote(meta.get_field(name).column)}"

    columns = [column(patient, "p", "id" if name == "pk" else name) for name in CarePlanPatient._fields]
    columns += [column(visit, "v", name) for name in CarePlanVisit._fields]
    return (
        f"SELECT {', '.join(columns)} FROM {quote(patient.db_table)} p "
        f"LEFT JOIN {quote(infusion.db_table)} i ON {column(infusion, 'i', 'patient')} = {column(patient, 'p', 'id')} "
        f"LEFT JOIN {quote(visit.db_table)} v ON {column(visit, 'v', 'infusion')} = {column(infusion, 'i', 'id')} "
        f"WHERE {column(patient, 'p', 'id')} = %s"
        + ("" if centres is None else f" AND {column(patient, 'p', 'centre')} IN ({', '.join(['%s'] * centres)})")
        + f" ORDER BY {', '.join(column(visit, 'v', name) for name in ('due_date', 'rule_code', 'occurrence'))}"
    )


def visit_appointment(visit: CarePlanVisit, subject: dict) -> dict:
    """A proposed Appointment for an open visit: its window as the requested period, its due date an extension."""
    return {
        "resourceType": "Appointment",
        "id": f"visit-{visit.id}",
        "identifier": [
            {
                "system": VISIT_ID_SYSTEM,
                "value": FollowUpVisit.uid_of(visit.infusion_id, visit.rule_code, visit.occurrence),
            }
        ],
        "status": "proposed",
        "description": visit.label,
        "extension": [{"url": DUE_DATE_EXTENSION, "valueDate": visit.due_date.isoformat()}],
        "requestedPeriod": [{"start": visit.window_start.isoformat(), "end": visit.window_end.isoformat()}],
        "participant": [{"actor": subject, "status": "needs-action"}],
    }


def patient_careplan_bundle(patient: CarePlanPatient | Patient, visits: Iterable[CarePlanVisit]) -> dict:
    """A Bundle (collection): the CarePlan of ``patient`` and its ``visits`` (``careplan_read``), and an Appointment
    for each visit still to be booked.

    Settled visits (completed, missed, cancelled) are CarePlan activities with their status and window; open
    ones refer to their Appointment. Every shape it can take is validated with fhir.resources by the tests; it is
    not validated again on each request, where that cost more than building it.
    """
    subject = patient_reference(patient)
    activities, appointments = [], []
    for visit in visits:
        if visit.status == VisitStatus.SCHEDULED:
            appointment = visit_appointment(visit, subject)
            appointments.append(appointment)
            activities.append({"reference": {"reference": f"Appointment/{appointment['id']}"}})
        else:
            activities.append(
                {
                    "detail": {
                        "kind": "Appointment",
                        "code": {"text": visit.label},
                        "status": _ACTIVITY_STATUS[visit.status],
                        "scheduledPeriod": {
                            "start": visit.window_start.isoformat(),
                            "end": visit.window_end.isoformat(),
                        },
                        "description": f"due {visit.due_date.isoformat()}"
                        + (f", done {visit.completed_on.isoformat()}" if visit.completed_on else ""),
                    }
                }
            )
    careplan = {
        "resourceType": "CarePlan",
        "id": f"schedule-{patient.pk}",
        "identifier": [{"system": PATIENT_ID_SYSTEM, "value": str(patient.pk)}],
        "status": _CAREPLAN_STATUS.get(patient.status, "active"),
        "intent": "plan",
        "title": "Long-term follow-up after CAR T-cell therapy",
        "subject": subject,
        "activity": activities,
    }
    base = f"{settings.SITE_URL}/api/v1"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timezone.now().isoformat(),
        "entry": [
            {"fullUrl": f"{base}/fhir/{resource['resourceType']}/{resource['id']}", "resource": resource}
            for resource in (careplan, *appointments)
        ],
    }
    return bundle


def visit_row(visit: FollowUpVisit) -> dict:
    patient = visit.infusion.patient
    return {
        "visit_id": visit.pk,
        "patient_id": patient.pk,
        "patient_source_system": patient.source_system,
        "patient_source_id": patient.source_id,
        "infusion_id": visit.infusion_id,
        "rule_code": visit.rule_code,
        "occurrence": visit.occurrence,
        "label": visit.label,
        "kind": visit.kind,
        "due_date": visit.due_date.isoformat(),
        "window_start": visit.window_start.isoformat(),
        "window_end": visit.window_end.isoformat(),
        "status": visit.status,
        "completed_on": visit.completed_on.isoformat() if visit.completed_on else "",
        "sequence": visit.sequence,
        # what a clinic's spreadsheet reader understands, not the protocol's codes
        "assessments": "; ".join(label(code) for code in visit.assessments or []),
    }


def visits_csv(visits: Iterable[FollowUpVisit]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for visit in visits:
        writer.writerow(visit_row(visit))
    return out.getvalue()


def visits_ndjson(visits: Iterable[FollowUpVisit]) -> Iterator[bytes]:
    """One JSON object per line (the CSV columns), streamed."""
    for visit in visits:
        yield (json.dumps(visit_row(visit), separators=(",", ":")) + "\n").encode()


def visits_calendar(visits: Iterable[FollowUpVisit], *, name: str, per_patient: bool) -> bytes:
    """An iCalendar feed: all-day entries on the due date (tentative) or the booked day, or the booked
    appointment's hours (confirmed). Entries say the visit, never the patient's name."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    now = timezone.now()
    for visit in visits:
        if visit.status not in (VisitStatus.SCHEDULED, VisitStatus.CANCELLED):
            continue
        event = icalendar.Event()
        event.add("uid", visit.ics_uid())
        event.add("sequence", visit.sequence)
        event.add("dtstamp", now)
        event.add("last-modified", visit.updated_at)
        start, end = visit.calendar_span()
        event.add("dtstart", start)
        if end is not None:
            event.add("dtend", end)
        summary = visit.label if per_patient else f"{visit.label} (patient {visit.infusion.patient_id})"
        event.add("summary", summary)
        event.add("description", f"Window {visit.window_start.isoformat()} to {visit.window_end.isoformat()}")
        event.add("status", visit.calendar_status())
        event.add("transp", "TRANSPARENT")
        cal.add_component(event)
    return cal.to_ical()
