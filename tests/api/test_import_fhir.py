"""EHR import through POST /api/v1/import/fhir, on the official HL7 examples and the Synthea bulk export.

None of the third-party files carries a CAR-T code: they must create no infusion. The same files with a CAR-T code
added must create the right infusion and plan its schedule, and importing the same export again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import json

from django.test import override_settings

from surveillance.imports.apply import PHONE_LEFT_OUT
from surveillance.models import FollowUpVisit, Infusion, Patient
from tests.imports.conftest import BULK, HCPCS, NDC, RXNORM, collection, concept, official

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
NON_CAR_T = [
    "procedure-example.json",
    "procedure-example-f201-tpf.json",  # chemotherapy is not CAR-T
    "procedure-example-appendectomy-narrative.json",
    "medicationadministration0301.json",
    "medicationadministration0303.json",
    "medicationadministration0308.json",
    "medicationadministrationexample3.json",
    "medicationrequestexample1.json",
]


def post_bundle(client, bundle, query: str = ""):
    return client.generic("POST", f"/api/v1/import/fhir{query}", json.dumps(bundle), content_type=FHIR_JSON)


def post_ndjson(client, text: str, query: str = ""):
    return client.generic("POST", f"/api/v1/import/fhir{query}", text, content_type=NDJSON)


def recent(days: int = 40) -> str:
    return (dt.date.today() - dt.timedelta(days=days)).isoformat()


def car_t_bundle() -> dict:
    """The official Patient, Procedure and MedicationAdministration examples, coded as CAR-T."""
    patient = official("patient-example.json")
    procedure = official("procedure-example.json")  # subject Patient/example
    procedure["code"] = concept(HCPCS, "Q2041")  # Yescarta
    procedure["performedDateTime"] = recent()
    administration = official("medicationadministration0308.json")
    administration["status"] = "completed"
    administration["subject"] = {"reference": "Patient/example"}
    administration["medicationCodeableConcept"] = concept(RXNORM, "1987402")  # Yescarta again: the same infusion
    administration.pop("effectivePeriod", None)
    administration["effectiveDateTime"] = recent()
    return collection(patient, procedure, administration)


def test_it_creates_no_infusion_from_the_non_car_t_examples(api_a, centre_a):
    bundle = collection(official("patient-example.json"), *(official(name) for name in NON_CAR_T))
    response = post_bundle(api_a, bundle)
    assert response.status_code == 200, response.content
    report = response.json()
    assert report["patients"]["created"] == 1
    # the example's Australian number, read without a country code at a centre that sets none, is left out
    assert report["ignored"]["by_reason"].pop(PHONE_LEFT_OUT) == 1
    assert report["infusions"]["created"] == 0 and sum(report["ignored"]["by_reason"].values()) == len(NON_CAR_T)
    assert not Infusion.objects.exists()
    assert Patient.objects.get().mrn == "12345"


def test_it_creates_the_right_infusion_and_schedule_from_the_car_t_examples(api_a, centre_a):
    response = post_bundle(api_a, car_t_bundle())
    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["patients"]["created"], report["infusions"]["created"]) == (1, 1)
    (infusion,) = Infusion.objects.all()
    assert (infusion.product.code, infusion.infusion_date.isoformat()) == ("yescarta", recent())
    assert (infusion.patient.centre, infusion.source_id) == (centre_a, "example")
    assert infusion.protocol is not None and report["visits_planned"] == infusion.visits.count() > 10


def test_it_changes_nothing_when_the_same_export_is_imported_again(api_a, centre_a):
    post_bundle(api_a, car_t_bundle())
    stamps = list(FollowUpVisit.objects.values_list("pk", "updated_at", "sequence"))
    patient_stamp = Patient.objects.get().updated_at
    report = post_bundle(api_a, car_t_bundle()).json()
    assert report["patients"] == {"created": 0, "updated": 0, "unchanged": 1, "closed": 0}
    assert report["infusions"] == {"created": 0, "replanned": 0, "unchanged": 2}
    assert list(FollowUpVisit.objects.values_list("pk", "updated_at", "sequence")) == stamps
    assert Patient.objects.get().updated_at == patient_stamp


def test_it_replans_when_the_ehr_corrects_the_infusion_date(api_a, centre_a):
    post_bundle(api_a, car_t_bundle())
    bundle = car_t_bundle()
    bundle["entry"] = bundle["entry"][:2]
    bundle["entry"][1]["resource"]["performedDateTime"] = recent(33)
    report = post_bundle(api_a, bundle).json()
    assert report["infusions"]["replanned"] == 1
    infusion = Infusion.objects.get()
    assert infusion.infusion_date.isoformat() == recent(33)
    assert infusion.visits.filter(sequence__gt=0).exists()


def test_it_reports_a_dry_run_and_saves_nothing(api_a, centre_a):
    report = post_bundle(api_a, car_t_bundle(), "?dry_run=1").json()
    assert report["dry_run"] is True and report["infusions"]["created"] == 1 and report["visits_planned"] > 10
    assert not Patient.objects.exists() and not FollowUpVisit.objects.exists()


def test_it_refuses_the_whole_bundle_for_one_bad_entry(api_a, centre_a):
    bundle = car_t_bundle()
    bundle["entry"][2]["resource"]["effectiveDateTime"] = "2024-13-45"
    response = post_bundle(api_a, bundle)
    assert response.status_code == 400 and response["Content-Type"].startswith(FHIR_JSON)
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2].resource.effectiveDateTime"]
    assert not Patient.objects.exists() and not Infusion.objects.exists()


def test_it_imports_a_bare_car_t_procedure_with_its_product_to_confirm_on_the_intensified_plan(api_a, centre_a):
    bundle = car_t_bundle()
    bundle["entry"][1]["resource"]["code"] = concept("http://www.ama-assn.org/go/cpt", "38228")
    bundle["entry"] = bundle["entry"][:2]
    response = post_bundle(api_a, bundle)
    assert response.status_code == 200, response.content
    infusion = Infusion.objects.get()
    assert infusion.product is None and infusion.patient == Patient.objects.get()
    assert infusion.protocol.variant == "intensified" and infusion.visits.count() > 10


def test_it_names_the_product_when_a_later_import_records_it_and_replans(api_a, centre_a):
    bundle = car_t_bundle()
    bundle["entry"][1]["resource"]["code"] = concept("http://www.ama-assn.org/go/cpt", "38228")
    post_bundle(api_a, collection(bundle["entry"][0]["resource"], bundle["entry"][1]["resource"]))
    report = post_bundle(api_a, collection(bundle["entry"][0]["resource"], bundle["entry"][2]["resource"])).json()
    assert (report["infusions"]["created"], report["infusions"]["replanned"]) == (0, 1)
    infusion = Infusion.objects.get()
    assert infusion.product.code == "yescarta" and infusion.protocol.variant == "standard"


def test_it_takes_the_product_from_a_sibling_resource(api_a, centre_a):
    bundle = car_t_bundle()
    bundle["entry"][1]["resource"]["code"] = concept("http://www.ama-assn.org/go/cpt", "38228")
    report = post_bundle(api_a, bundle).json()
    assert report["infusions"]["created"] == 1 and Infusion.objects.get().product.code == "yescarta"


def test_it_resolves_a_contained_medication(api_a, centre_a):
    administration = official("medicationadministration0301.json")
    administration["status"] = "completed"
    administration["subject"] = {"reference": "Patient/example"}
    administration["contained"][0]["code"] = concept(NDC, "0078-0846-19")  # Kymriah
    administration.pop("effectivePeriod", None)
    administration["effectiveDateTime"] = recent()
    report = post_bundle(api_a, collection(official("patient-example.json"), administration)).json()
    assert report["infusions"]["created"] == 1 and Infusion.objects.get().product.code == "kymriah"


def test_it_closes_the_follow_up_of_a_deceased_patient(api_a, centre_a):
    report = post_bundle(api_a, collection(official("patient-example-d.json"))).json()
    assert report["patients"]["closed"] == 1 and Patient.objects.get().status == "deceased"


def test_it_answers_bad_input_with_a_clear_4xx(api_a, centre_a):
    assert post_bundle(api_a, official("patient-example.json")).json()["issue"][0]["diagnostics"] == "expected a Bundle"
    bad_json = api_a.generic("POST", "/api/v1/import/fhir", "{nope", content_type=FHIR_JSON)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["issue"][0]["diagnostics"]
    response = post_bundle(api_a, official("bundle-response.json"))
    assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["Bundle.type"]
    wrong_type = api_a.generic("POST", "/api/v1/import/fhir", "x", content_type="application/xml")
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"
    assert not Patient.objects.exists()


@override_settings(CARTWATCH={**__import__("django.conf").conf.settings.CARTWATCH, "IMPORT_MAX_BYTES": 1000})
def test_it_refuses_an_oversize_payload_with_413(api_a, centre_a):
    response = post_bundle(api_a, collection(*[official("patient-example.json")] * 3))
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert not Patient.objects.exists()


def bulk_text(*names: str) -> str:
    return "".join((BULK / name).read_text(encoding="utf-8") for name in names)


@override_settings(CARTWATCH={**__import__("django.conf").conf.settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 4 << 20})
def test_it_imports_the_bulk_export_with_no_infusion_and_reimports_as_a_no_op(api_a, centre_a):
    """The whole sample (1.7 MB), imported within the request as a deployment with a higher limit does."""
    text = bulk_text("Patient.000.ndjson", "Procedure.000.ndjson", "MedicationRequest.000.ndjson")
    report = post_ndjson(api_a, text).json()
    assert (report["patients"]["created"], report["infusions"]["created"], report["error_count"]) == (11, 0, 0)
    assert report["ignored"]["count"] == 1194 + 616 + 11  # with every patient's fictional 555 number left out
    assert report["ignored"]["by_reason"][PHONE_LEFT_OUT] == 11
    assert Patient.objects.filter(status="deceased").count() == 2
    again = post_ndjson(api_a, text).json()
    assert (again["patients"]["unchanged"], again["patients"]["created"], again["patients"]["updated"]) == (11, 0, 0)


def test_it_imports_a_bulk_export_line_coded_as_car_t(api_a, centre_a):
    lines = bulk_text("Procedure.000.ndjson").splitlines()
    procedure = json.loads(lines[0])  # subject Patient/8e1a0a7c-..., alive
    procedure["code"]["coding"].append({"system": HCPCS, "code": "Q2055"})  # Abecma
    procedure.pop("performedPeriod")
    procedure["performedDateTime"] = recent()
    text = bulk_text("Patient.000.ndjson") + json.dumps(procedure) + "\n"
    report = post_ndjson(api_a, text).json()
    assert report["infusions"]["created"] == 1
    infusion = Infusion.objects.get()
    assert (infusion.product.code, infusion.patient.source_id) == ("abecma", "8e1a0a7c-e308-444b-075a-3c2b1f60f881")
    assert infusion.visits.exists()
    assert post_ndjson(api_a, text).json()["infusions"] == {"created": 0, "replanned": 0, "unchanged": 1}


def test_it_reports_bad_ndjson_lines_and_imports_the_others(api_a, centre_a):
    lines = bulk_text("Patient.000.ndjson").splitlines()
    text = "\n".join(
        [lines[0], "{broken", '{"resourceType": "Patient", "id": "x", "birthDate": "3000-01-01"}', lines[1]]
    )
    report = post_ndjson(api_a, text).json()
    assert report["patients"]["created"] == 2
    assert [(e["line"], e["field"]) for e in report["errors"]] == [(2, ""), (3, "birthDate")]


def test_it_reports_an_infusion_whose_patient_is_unknown(api_a, centre_a):
    procedure = official("procedure-example.json")
    procedure["code"] = concept(HCPCS, "Q2041")
    procedure["performedDateTime"] = recent()
    report = post_ndjson(api_a, json.dumps(procedure) + "\n").json()
    assert report["errors"][0]["line"] == 1 and report["errors"][0]["code"] == "not-found"
    assert not Infusion.objects.exists()


def test_it_refuses_a_null_character_with_a_4xx(api_a, centre_a):
    patient = official("patient-example.json")
    patient["name"][0]["family"] = "Chal\u0000mers"
    response = post_bundle(api_a, collection(patient))
    assert response.status_code == 400
    assert not Patient.objects.exists()
    assert post_bundle(api_a, collection(official("patient-example.json")), "?centre=a%00").status_code == 400
