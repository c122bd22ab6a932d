"""Risk flags that arrive with an import are recorded on the patient's infusions and choose their variant: in the
same Bundle, CSV row or NDJSON export as the infusion, or in a later one that re-plans it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from surveillance.imports import ehr_import
from surveillance.imports.fhir.records import FhirImportError
from surveillance.models import Infusion, RiskFlag
from tests.imports.conftest import car_t_procedure, collection, concept

pytestmark = pytest.mark.django_db
LOINC = "http://loinc.org"
TODAY = dt.date.today()


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
    "name": [{"family": "Lima", "given": ["Ana"]}],
    "birthDate": "1970-04-01",
}


def infusion(days_ago: int = 100) -> dict:
    return car_t_procedure("proc-1", "p1", TODAY - dt.timedelta(days=days_ago))


def ch_variant(gene: str = "DNMT3A", vaf: float = 0.04, days_ago: int = 120, subject: str = "p1") -> dict:
    return {
        "resourceType": "Observation",
        "id": f"var-{gene}",
        "status": "final",
        "code": concept(LOINC, "69548-6"),
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": ago(days_ago),
        "valueCodeableConcept": concept(LOINC, "LA9633-4"),
        "component": [
            {"code": concept(LOINC, "48018-6"), "valueCodeableConcept": {"coding": [{"display": gene}]}},
            {"code": concept(LOINC, "81258-6"), "valueQuantity": {"value": vaf}},
        ],
    }


def test_it_plans_the_intensified_variant_for_a_ch_finding_in_the_same_bundle(centre_a):
    report = ehr_import.bundle_import(collection(PATIENT, infusion(), ch_variant()), centre_a)
    stored = Infusion.objects.get()
    assert stored.protocol.variant == "intensified"
    flag = RiskFlag.objects.get(infusion=stored)
    assert (flag.code, flag.present, flag.detail) == ("clonal_haematopoiesis", True, "DNMT3A 4%")
    assert report.risk_flags_recorded == 1


def test_it_replans_an_infusion_when_a_later_export_brings_the_flag(centre_a):
    ehr_import.bundle_import(collection(PATIENT, infusion()), centre_a)
    assert Infusion.objects.get().protocol.variant == "standard"
    report = ehr_import.bundle_import(collection(PATIENT, ch_variant()), centre_a)
    assert Infusion.objects.get().protocol.variant == "intensified"
    assert report.risk_flags_recorded == 1 and report.visits_planned > 0
    again = ehr_import.bundle_import(collection(PATIENT, ch_variant()), centre_a)
    assert again.risk_flags_recorded == 0  # the same finding again changes nothing


def test_it_refuses_a_bundle_whose_flag_names_an_unknown_patient(centre_a):
    with pytest.raises(FhirImportError) as caught:
        ehr_import.bundle_import(collection(PATIENT, infusion(), ch_variant(subject="nobody")), centre_a)
    assert [issue.field for issue in caught.value.issues] == ["subject.reference"]
    assert not Infusion.objects.exists()


def test_it_records_the_flag_columns_of_a_csv_row(centre_a):
    text = (
        "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number,"
        "risk_flags,risk_flags_observed_on,ch_findings\n"
        f"A-17,Ana,Lima,1961-02-03,F,,,en,Yescarta,{ago(90)},L-9,prior_auto_hct,{ago(400)},\n"
    )
    ehr_import.csv_import(text.encode(), centre_a)
    stored = Infusion.objects.get()
    assert list(stored.risk_flags.values_list("code", flat=True)) == ["prior_auto_hct"]
    assert stored.protocol.variant == "intensified"


def test_it_records_a_flag_of_an_ndjson_export_after_its_patients_infusion(centre_a):
    lines = [json.dumps(resource) for resource in (PATIENT, infusion(), ch_variant("TET2", 0.05))]
    report = ehr_import.ndjson_import(lines, centre_a)
    assert not report.errors
    assert Infusion.objects.get().protocol.variant == "intensified"
    assert report.risk_flags_recorded == 1
