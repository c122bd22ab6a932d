"""An imported infusion that contradicts the patient's record (before the birth date, after a recorded death) is an
issue naming its entry or line, like any other bad record, and nothing of it is saved; a death imported later
cancels the visits still ahead."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import FollowUpVisit, Infusion, Patient, PatientStatus, VisitStatus
from tests.imports.conftest import BULK, car_t_procedure, collection, official

pytestmark = pytest.mark.django_db

TODAY = dt.date.today()
SYNTHEA_DEAD = "3af3708d-41f1-cd80-f3dd-ec5ac76072bf"  # born 1960, deceasedDateTime 1971


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def patient(**changes) -> dict:
    resource = official("patient-example.json")  # id "example"
    resource.update(changes)
    return resource


def car_t_infusion(patient_id: str = "example", days_ago: int = 40) -> dict:
    return car_t_procedure(f"proc-{patient_id}", patient_id, TODAY - dt.timedelta(days=days_ago))


def bundle_issues(bundle: dict, centre) -> list[tuple[int | None, str, str]]:
    with pytest.raises(FhirImportError) as caught:
        ehr_import.bundle_import(bundle, centre)
    return [(issue.entry, issue.field, issue.message) for issue in caught.value.issues]


def test_it_refuses_a_bundle_whose_infusion_precedes_the_birth_date(centre_a):
    bundle = collection(patient(birthDate=ago(30)), car_t_infusion(days_ago=40))
    assert bundle_issues(bundle, centre_a) == [(1, "date", "is before the patient's birth date")]
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_refuses_a_bundle_whose_infusion_follows_the_recorded_death(centre_a):
    dead = patient(deceasedDateTime=ago(100))
    dead.pop("deceasedBoolean")
    bundle = collection(dead, car_t_infusion(days_ago=40))
    assert bundle_issues(bundle, centre_a) == [(1, "date", "is after the patient's recorded date of death")]
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_reports_the_synthea_patient_dead_decades_ago_and_imports_the_rest(centre_a):
    lines = (BULK / "Patient.000.ndjson").read_text(encoding="utf-8").splitlines()
    report = ehr_import.ndjson_import([*lines, json.dumps(car_t_infusion(SYNTHEA_DEAD))], centre_a)
    assert [(e.line, e.field, e.message) for e in report.errors] == [
        (len(lines) + 1, "date", "is after the patient's recorded date of death")
    ]
    assert report.patients_created == len(lines) and report.infusions_created == 0
    assert not Infusion.objects.exists() and not FollowUpVisit.objects.exists()


CSV_HEAD = "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"


def test_it_refuses_a_csv_row_infused_before_birth_naming_its_line(centre_a):
    text = (
        CSV_HEAD
        + f"C-1,Ana,Lima,1970-01-02,f,,,en,yescarta,{ago(20)},\nC-2,Ben,Ng,{ago(10)},m,,,en,kymriah,{ago(20)},\n"
    )
    with pytest.raises(FhirImportError) as caught:
        ehr_import.csv_import(text, centre_a)
    assert [(i.line, i.field, i.message) for i in caught.value.issues] == [
        (3, "date", "is before the patient's birth date")
    ]
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_refuses_a_csv_row_for_a_patient_who_died_before_it(centre_a):
    dead = patient(deceasedDateTime=ago(100))
    dead.pop("deceasedBoolean")
    ehr_import.bundle_import(collection(dead), centre_a)
    assert Patient.objects.get().status == PatientStatus.DECEASED
    text = CSV_HEAD + f"12345,Peter,Chalmers,1974-12-25,m,,,en,yescarta,{ago(20)},\n"  # that patient, by MRN
    with pytest.raises(FhirImportError) as caught:
        ehr_import.csv_import(text, centre_a)
    assert [(i.line, i.field) for i in caught.value.issues] == [(2, "date")]
    assert not Infusion.objects.exists()


def test_it_cancels_the_visits_ahead_when_a_reimport_records_the_death(centre_a):
    ehr_import.bundle_import(collection(patient(), car_t_infusion(days_ago=200)), centre_a)
    infusion = Infusion.objects.get()
    ahead = set(infusion.visits.filter(status=VisitStatus.SCHEDULED).values_list("pk", flat=True))
    assert ahead
    dead = patient(deceasedDateTime=ago(3))
    dead.pop("deceasedBoolean")
    report = ehr_import.bundle_import(collection(dead, car_t_infusion(days_ago=200)), centre_a)
    assert (report.patients_closed, report.infusions_unchanged) == (1, 1)
    assert set(FollowUpVisit.objects.filter(pk__in=ahead).values_list("status", flat=True)) == {"cancelled"}


def test_it_refuses_a_reimported_birth_date_after_an_infusion(centre_a):
    ehr_import.bundle_import(collection(patient(), car_t_infusion(days_ago=200)), centre_a)
    issues = bundle_issues(collection(patient(birthDate=ago(100))), centre_a)
    assert issues == [(0, "birthDate", "is after the date of one of the patient's infusions")]
    assert Patient.objects.get().birth_date.isoformat() == "1974-12-25"


def test_it_refuses_a_reimported_death_before_an_infusion(centre_a):
    ehr_import.bundle_import(collection(patient(), car_t_infusion(days_ago=200)), centre_a)
    dead = patient(deceasedDateTime=ago(300))
    dead.pop("deceasedBoolean")
    issues = bundle_issues(collection(dead), centre_a)
    assert issues == [(0, "deceasedDateTime", "is before the date of one of the patient's infusions")]
    assert Patient.objects.get().status == PatientStatus.ACTIVE


def test_it_keeps_nothing_of_an_ndjson_line_whose_death_precedes_an_infusion(centre_a):
    ehr_import.bundle_import(collection(patient(), car_t_infusion(days_ago=200)), centre_a)
    dead = patient(deceasedDateTime=ago(300), name=[{"family": "Chalmers-Lee", "given": ["Peter"]}])
    dead.pop("deceasedBoolean")
    report = ehr_import.ndjson_import([json.dumps(dead)], centre_a)
    assert [(e.line, e.field) for e in report.errors] == [(1, "deceasedDateTime")]
    assert (report.patients_updated, report.patients_closed) == (0, 0)
    stored = Patient.objects.get()
    assert (stored.family_name, stored.status) == ("Chalmers", PatientStatus.ACTIVE)
