"""Who an imported Patient is: the stored patient it matches, a new one, or a conflict for a coordinator.

A resource id is unique only within the server that issued it: two EHRs both have a ``Patient/1``. So a record
matches a stored patient by

1. a coordinator's decision on that record (an :class:`IdentityReview` LINKED to a patient or CREATED as one),
   which keeps the patient's details as they are; else its source identity (source system, resource id), the
   source system being the entry's absolute fullUrl base, its ``meta.source`` or the sender's declared source;
2. else its business identifier (the MRN, unique within the centre; the systems must agree when both are known);

never by a bare id. Matched by identifier only (another source, or the source's id changed), a record whose
birth date or family name contradicts the stored patient is a *conflict*: the import refuses the entry and a
coordinator reviews it (``IdentityReview``), since merging would hand one person's infusions to another. A record
without an identifier is stored with its id as MRN; when another patient already holds that MRN, that is a conflict
too. Plain functions over records and patients, so that a test can call them without an import.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from surveillance.care import contact_details
from surveillance.imports.fhir.records import PatientRecord
from surveillance.models import IdentityReview, IdentityReviewStatus, Patient, TreatmentCentre

#: (source system, resource id): a patient's identity within the systems that send it.
SourceKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Identity:
    """The outcome of matching one record.

    ``patient``: the stored patient the record is (None: a new patient). ``linked``: reached through a
    coordinator's decision, which keeps the stored details (the record contradicts them). ``conflict``: why the
    record may not be applied to ``patient`` (field names only, never values); the record is then refused.
    """

    patient: Patient | None
    linked: bool = False
    conflict: str = ""


def record_mrn(record: PatientRecord) -> str:
    """The MRN a record is stored under: its identifier's value, else its resource id."""
    return (record.mrn or record.source_id).strip()


def patient_identify(
    record: PatientRecord,
    *,
    by_source: Patient | None,
    by_mrn: Patient | None,
    linked: Patient | None = None,
) -> Identity:
    """Decide who ``record`` is, given the stored patients found by its source identity, by its MRN and through a
    link (``patients_find``). See the module docstring for the rules."""
    if linked is not None:
        return Identity(linked, linked=True)
    if by_source is not None:
        return Identity(by_source)
    if by_mrn is None:
        return Identity(None)
    if not record.mrn:
        return Identity(by_mrn, conflict="it has no identifier and its id is the MRN of another patient")
    differing = _differing(record, by_mrn)
    if differing:
        verb = "differ" if len(differing) > 1 else "differs"
        return Identity(by_mrn, conflict=f"its identifier matches a patient whose {' and '.join(differing)} {verb}")
    return Identity(by_mrn)


def _differing(record: PatientRecord, patient: Patient) -> list[str]:
    """What contradicts the stored patient: a known value against another known value (a blank is no evidence)."""
    differing = []
    if record.identifier_system and patient.identifier_system and record.identifier_system != patient.identifier_system:
        differing.append("identifier system")
    if record.birth_date and patient.birth_date and record.birth_date != patient.birth_date:
        differing.append("birth date")
    if record.family_name and patient.family_name and record.family_name.casefold() != patient.family_name.casefold():
        differing.append("family name")
    return differing


@dataclass(slots=True)
class Found:
    """Stored patients found for some records, by source identity, by MRN and through links."""

    by_source: dict[SourceKey, Patient]
    by_mrn: dict[str, Patient]
    linked: dict[SourceKey, Patient]

    def identify(self, record: PatientRecord, source: str) -> Identity:
        key = (source, record.source_id)
        return patient_identify(
            record,
            by_source=self.by_source.get(key),
            by_mrn=self.by_mrn.get(record_mrn(record)),
            linked=self.linked.get(key),
        )


def patients_find(centre: TreatmentCentre, keys: Iterable[SourceKey], mrns: Iterable[str]) -> Found:
    """The centre's patients with these source identities or MRNs, and the links of these identities: two queries
    for a whole batch."""
    keys, mrns = set(keys), set(mrns)
    found = Found({}, {}, {})
    if not keys and not mrns:
        return found
    by_source: dict[str, set[str]] = {}
    for source, source_id in keys:
        by_source.setdefault(source, set()).add(source_id)
    by_key = Q()
    for source, source_ids in by_source.items():  # a query term per source system (one, mostly)
        # "not empty" written out, as the source identities' unique index holds its rows: PostgreSQL proves an
        # index's condition from an IN list of at most 100 values, and a batch names more, so without it every
        # batch read the centre's whole patient table.
        by_key |= Q(source_system=source, source_id__in=source_ids) & ~Q(source_id="")
    for patient in Patient.objects.filter(centre=centre).filter(by_key | Q(mrn__in=mrns)).order_by():
        patient.centre = centre  # the one object of the import's centre, not one joined into every row
        if (patient.source_system, patient.source_id) in keys:
            found.by_source[(patient.source_system, patient.source_id)] = patient
        if patient.mrn in mrns:
            found.by_mrn[patient.mrn] = patient
    if keys:
        aliases = [IdentityReviewStatus.LINKED, IdentityReviewStatus.CREATED]  # the alias index's condition
        links = IdentityReview.objects.filter(centre=centre, status__in=aliases).filter(by_key).order_by()
        for review in links.select_related("resolved_patient__centre"):
            found.linked[(review.source_system, review.source_id)] = review.resolved_patient
    return found


# --------------------------------------------------------------------------------------------- the review worklist
def _review_phone(raw: str, region: str) -> str:
    """The held record's number in E.164. The import refused invalid numbers before a record could be held; one
    held before numbers were checked is left out (the coordinator enters it on the patient page)."""
    try:
        return contact_details.phone_normalise(raw, region)
    except contact_details.PhoneInvalid:
        return ""


def record_as_json(record: PatientRecord) -> dict:
    """What a coordinator sees of a refused record, and what a new patient is created from."""
    return {
        "mrn": record.mrn or "",
        "identifier_system": record.identifier_system or "",
        "given_name": record.given_name,
        "family_name": record.family_name,
        "birth_date": record.birth_date.isoformat() if record.birth_date else None,
        "sex": record.sex,
        "email": record.email,
        "phone": record.phone,
        "preferred_language": record.preferred_language,
    }


def identity_reviews_open(centre: TreatmentCentre, conflicts: Iterable[tuple[str, PatientRecord, Identity]]) -> int:
    """Put refused records on the review worklist, once each: a record sent again refreshes its open review.

    Called after the import's own transaction, so that a Bundle refused whole still leaves its reviews.
    Returns how many records are waiting.
    """
    count = 0
    for source, record, identity in conflicts:
        assert identity.patient is not None and identity.conflict
        key = {
            "centre": centre,
            "source_system": source,
            "source_id": record.source_id,
            "status": IdentityReviewStatus.OPEN,
        }
        values = {"patient": identity.patient, "record": record_as_json(record), "reason": identity.conflict}
        try:
            with transaction.atomic():
                IdentityReview.objects.update_or_create(**key, defaults=values)
        except IntegrityError:  # the same record refused by a concurrent import: its review is there now
            IdentityReview.objects.filter(**key).update(**values)
        count += 1
    return count


class ReviewClosed(Exception):
    """The review was decided meanwhile (by someone else): nothing was changed."""


def identity_review_resolve(
    review: IdentityReview, decision: str, *, by, mrn: str = "", now: dt.datetime | None = None
) -> Patient | None:
    """Decide an open review: LINKED (the record is the stored patient; later imports of it reach that patient and
    leave its details as they are), CREATED (a new patient from the record, under ``mrn``: the record's own MRN is
    the other patient's) or REJECTED. Compare-and-set on the open status: a review decided twice raises
    ``ReviewClosed``. Returns the patient the record turned out to be (None when rejected).
    """
    now = now or timezone.now()
    with transaction.atomic():
        patient = _review_patient(review, decision, mrn)
        updated = IdentityReview.objects.filter(pk=review.pk, status=IdentityReviewStatus.OPEN).update(
            status=decision, resolved_patient=patient, resolved_by=by, resolved_at=now
        )
        if updated != 1:
            raise ReviewClosed("this review was decided meanwhile")
    review.refresh_from_db()
    return patient


def _review_patient(review: IdentityReview, decision: str, mrn: str) -> Patient | None:
    patient: Patient | None = None
    if decision == IdentityReviewStatus.LINKED:
        patient = review.patient
    elif decision == IdentityReviewStatus.CREATED:
        data = review.record
        patient = Patient.objects.create(
            centre=review.centre,
            mrn=mrn,
            identifier_system=data["identifier_system"],
            given_name=data["given_name"],
            family_name=data["family_name"],
            birth_date=dt.date.fromisoformat(data["birth_date"]) if data["birth_date"] else None,
            sex=data["sex"],
            email=data["email"],
            phone=_review_phone(data["phone"], review.centre.country),
            preferred_language=data["preferred_language"],
            source_system=review.source_system,
            source_id=review.source_id,
        )
    elif decision != IdentityReviewStatus.REJECTED:
        raise ValueError(f"not a decision: {decision}")
    return patient
