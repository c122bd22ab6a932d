"""An EHR export's own results and diagnoses raise the second-cancer signals on their own, with no one typing:
normal counts and cancers diagnosed before the infusion raise nothing; a grade-2 neutropenia at month 9 and a new
T-cell lymphoma at month 14 each open one physician review; the same export again opens nothing more."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from surveillance.imports import ehr_import
from surveillance.models import Signal, SignalReview, VisitResult
from tests.imports.conftest import car_t_procedure, collection, concept

pytestmark = pytest.mark.django_db
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
TODAY = dt.date.today()
INFUSED = TODAY - dt.timedelta(days=500)

PATIENT = {
    "resourceType": "Patient",
    "id": "syn-1",
    "identifier": [{"system": "urn:mrn", "value": "SYN-1"}],
    "name": [{"family": "Okafor", "given": ["Ada"]}],
    "birthDate": "1958-09-14",
}
INFUSION = car_t_procedure("car-t", "syn-1", INFUSED)


def on_day(day: int) -> str:
    return (INFUSED + dt.timedelta(days=day)).isoformat()


def count(code: str, value: float, unit: str, day: int, n: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{code}-{day}-{n}",
        "status": "final",
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": concept(LOINC, code),
        "subject": {"reference": "Patient/syn-1"},
        "effectiveDateTime": on_day(day),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def diagnosis(code: str, day: int) -> dict:
    return {
        "resourceType": "Condition",
        "id": f"cond-{code}-{day}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": concept(ICD10CM, code),
        "subject": {"reference": "Patient/syn-1"},
        "onsetDateTime": on_day(day),
    }


def encounter(day: int, n: int) -> dict:
    return {
        "resourceType": "Encounter",
        "id": f"enc-{day}-{n}",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/syn-1"},
        "period": {"start": on_day(day)},
    }


def history() -> list[dict]:
    """Hundreds of unrelated or normal resources, as a Synthea export has: normal counts every month, visits,
    and the lymphoma the CAR-T treated, diagnosed before the infusion."""
    resources: list[dict] = [diagnosis("C83.3", -400), diagnosis("C44.91", -900)]
    for n, day in enumerate(range(-300, 480, 30)):
        resources += [
            count("751-8", 3.1, "10*3/uL", day, n),
            count("777-3", 240, "10*3/uL", day, n),
            count("718-7", 13.2, "g/dL", day, n),
            count("787-2", 91, "fL", day, n),
            count("6690-2", 6.4, "10*3/uL", day, n),
            encounter(day, n),
        ]
    return resources


def open_reviews() -> list[str]:
    return sorted(SignalReview.objects.filter(status="open").values_list("kind", flat=True))


def test_it_raises_nothing_on_normal_counts_and_cancers_before_the_infusion(centre_a):
    report = ehr_import.bundle_import(collection(PATIENT, INFUSION, *history()), centre_a)
    assert report.signals_raised == 0 and open_reviews() == []
    assert report.visits_completed  # the monthly encounters record the visits their windows hold


def test_it_opens_one_review_each_for_a_month_9_neutropenia_and_a_month_14_t_cell_lymphoma(centre_a):
    resources = [*history(), count("751-8", 0.9, "10*3/uL", 274, 99), diagnosis("C84.40", 425)]
    report = ehr_import.bundle_import(collection(PATIENT, INFUSION, *resources), centre_a)
    assert open_reviews() == ["neutropenia", "t_cell_lymphoma"]
    assert report.signals_raised == 2
    again = ehr_import.bundle_import(collection(PATIENT, INFUSION, *resources), centre_a)
    assert again.signals_raised == 0 and SignalReview.objects.count() == 2


def test_it_reads_the_results_of_an_ndjson_export_too(centre_a):
    lines = [json.dumps(r) for r in (PATIENT, INFUSION, *history(), count("751-8", 0.8, "10*3/uL", 300, 98))]
    report = ehr_import.ndjson_import(lines, centre_a, batch_lines=50)
    assert not report.errors
    assert open_reviews() == ["neutropenia"] and report.signals_raised == 1


def test_it_ignores_results_of_patients_it_does_not_follow(centre_a):
    stranger = {**count("751-8", 0.5, "10*3/uL", 300, 1), "subject": {"reference": "Patient/elsewhere"}}
    report = ehr_import.bundle_import(collection(PATIENT, INFUSION, stranger), centre_a)
    assert report.signals_raised == 0 and open_reviews() == []
    assert report.ignored["Observation: about a patient not followed here"] == 1


def test_it_compares_a_later_export_with_the_results_already_on_file(centre_a):
    """A high MCV imported today is not *new* macrocytosis when one was on file from an earlier export: the second
    export alone does not show it, the visits' stored results do."""
    first = ehr_import.bundle_import(
        collection(PATIENT, INFUSION, *history(), count("787-2", 106, "fL", 112, 77)), centre_a
    )
    assert first.signals_raised == 1 and open_reviews() == ["macrocytosis"]
    assert VisitResult.objects.filter(loinc="787-2", value=106).exists()  # on file, on the visit it fell in

    later = ehr_import.bundle_import(collection(PATIENT, INFUSION, count("787-2", 108, "fL", 400, 78)), centre_a)
    assert later.signals_raised == 0
    assert Signal.objects.filter(kind="macrocytosis").count() == 1
