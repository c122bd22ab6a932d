"""What a batch of records needs from the database, looked up with a few queries instead of a few per record.

A batch of NDJSON lines names up to hundreds of patients; looking each up (and each one's infusions) would cost
queries per line. ``BatchLookup.load`` reads them all at once, and the record functions (``imports.apply``) keep it
in step as they write: a patient stored or changed is remembered under its new keys, one closed is forgotten.
Identity itself is decided by ``imports.identity`` on what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from surveillance.imports.fhir.records import PatientRecord
from surveillance.imports.identity import Identity, SourceKey, patient_identify, patients_find
from surveillance.models import Infusion, Patient, TreatmentCentre


@dataclass(slots=True)
class BatchLookup:
    """Patients by pk (one object each), and the keys they were found by."""

    objects: dict[int, Patient] = field(default_factory=dict)  # pk -> the one object of that patient
    by_source: dict[SourceKey, int] = field(default_factory=dict)  # source identity -> patient pk
    by_mrn: dict[str, int] = field(default_factory=dict)
    linked: dict[SourceKey, int] = field(default_factory=dict)  # source identity -> the patient a coordinator chose
    keys: dict[int, tuple[SourceKey | None, str | None]] = field(default_factory=dict)  # pk -> its keys above
    by_ref: dict[SourceKey, int] = field(default_factory=dict)  # an infusion's patient (source, reference) -> pk
    infusions: dict[int, list[Infusion]] | None = None  # patient pk -> its infusions by pk, once loaded

    @classmethod
    def load(
        cls,
        centre: TreatmentCentre,
        patient_keys: Iterable[SourceKey],
        mrns: Iterable[str],
        refs: set[SourceKey],
        known: Mapping[SourceKey, int],
    ) -> BatchLookup:
        """The batch's patients (by source identity or MRN) and its infusions' patients (``refs``): those this
        import stored already (``known``) by pk, the others by source identity."""
        lookup = cls()
        found = patients_find(centre, patient_keys, mrns)
        for key, patient in found.by_source.items():
            lookup.objects[patient.pk] = patient
            lookup.by_source[key] = patient.pk
            lookup.keys[patient.pk] = (key, None)
        for mrn, patient in found.by_mrn.items():
            lookup.objects.setdefault(patient.pk, patient)
            lookup.by_mrn[mrn] = patient.pk
            lookup.keys[patient.pk] = (lookup.keys.get(patient.pk, (None, None))[0], mrn)
        for key, patient in found.linked.items():
            lookup.objects.setdefault(patient.pk, patient)
            lookup.linked[key] = patient.pk
        stored = {ref: known[ref] for ref in refs if ref in known}
        missing = set(stored.values()) - set(lookup.objects)
        if missing:
            for patient in Patient.objects.filter(centre=centre, pk__in=missing):
                patient.centre = centre
                lookup.objects[patient.pk] = patient
        lookup.by_ref.update({ref: pk for ref, pk in stored.items() if pk in lookup.objects})
        others = refs - set(stored)
        if others:
            found = patients_find(centre, others, ())
            for key, patient in {**found.by_source, **found.linked}.items():
                lookup.by_ref[key] = lookup.objects.setdefault(patient.pk, patient).pk
        return lookup

    def _patient(self, pks: Mapping, value) -> Patient | None:
        return self.objects[pks[value]] if value in pks else None

    def identify(self, record: PatientRecord, key: SourceKey, mrn: str) -> Identity:
        return patient_identify(
            record,
            by_source=self._patient(self.by_source, key),
            by_mrn=self._patient(self.by_mrn, mrn),
            linked=self._patient(self.linked, key),
        )

    def patient_for(self, ref: SourceKey) -> Patient | None:
        return self._patient(self.by_ref, ref)

    def remember(self, patient: Patient, key: SourceKey) -> None:
        """The patient was stored or changed (by the record with source identity ``key``): find it by its keys now."""
        old_source, old_mrn = self.keys.get(patient.pk, (None, None))
        if old_source is not None and self.by_source.get(old_source) == patient.pk:
            del self.by_source[old_source]
        if old_mrn is not None and self.by_mrn.get(old_mrn) == patient.pk:
            del self.by_mrn[old_mrn]
        own = (patient.source_system, patient.source_id)
        self.objects[patient.pk] = patient
        self.by_source[own] = self.by_mrn[patient.mrn] = patient.pk
        self.keys[patient.pk] = (own, patient.mrn)
        self.by_ref[key] = patient.pk

    def forget(self, patient: Patient) -> None:
        """The patient changed behind the lookup's back (closed): it is looked up in the database again."""
        source_key, mrn = self.keys.pop(patient.pk, (None, None))
        self.by_source.pop(source_key, None)
        self.by_mrn.pop(mrn, None)
        self.objects.pop(patient.pk, None)
        for pks in (self.by_ref, self.linked):
            for ref in [ref for ref, pk in pks.items() if pk == patient.pk]:
                del pks[ref]

    def infusions_load(self) -> None:
        """The infusions of the batch's infusions' patients, in one query (they must all be stored)."""
        self.infusions = {pk: [] for pk in self.by_ref.values()}
        for infusion in Infusion.objects.filter(patient_id__in=list(self.infusions)).order_by("pk"):
            self.infusions[infusion.patient_id].append(infusion)

    def infusions_of(self, patient: Patient) -> list[Infusion] | None:
        """The patient's infusions, or None when they were not loaded (or forgotten)."""
        if self.infusions is not None and patient.pk in self.infusions:
            return list(self.infusions[patient.pk])
        return None

    def infusion_added(self, patient: Patient, infusion: Infusion) -> None:
        if self.infusions is not None and patient.pk in self.infusions:
            self.infusions[patient.pk].append(infusion)

    def infusions_forget(self, patient: Patient) -> None:
        if self.infusions is not None:
            self.infusions.pop(patient.pk, None)
