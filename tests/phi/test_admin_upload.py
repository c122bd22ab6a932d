"""No patient data in the logs of the admin's upload page, nor in what it shows of a refusal: a CSV and a FHIR
Bundle holding the sentinel are previewed and applied; a CSV and an NDJSON export in Latin-1, a UTF-16 file, a CSV
whose record naming the sentinel is refused, and a large export run as an import job with a refused line all
answer with their refusals, none of which may quote the sentinel."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from surveillance.imports import jobs
from surveillance.models import ImportJob, Patient
from tests.imports.conftest import collection
from tests.phi.sentinel import BIRTH, EMAIL, FAMILY, GIVEN, MRN, PHONE, car_t_procedure, fhir_patient, leaks

pytestmark = pytest.mark.django_db
PAGE = "admin:import_upload"
HEADER = "mrn,given_name,family_name,birth_date,sex,email,phone,preferred_language,product,infusion_date,lot_number\n"


class Shown:
    """What the upload pages showed of refusals: a 4xx body whole, and the refusals and report errors of a
    page that answered 200 (its report may list what was imported, which staff may see)."""

    def __init__(self) -> None:
        self.places: list[tuple[str, str]] = []

    def keep(self, label: str, response, *, expect: int):
        assert response.status_code == expect, (label, response.status_code, response.content[:500])
        if response.status_code >= 400:
            self.places.append((f"{label} ({response.status_code})", response.content.decode()))
        context = response.context or {}
        refusals = context.get("refusals") or []
        errors = (context.get("report") or {}).get("errors") or []
        self.places.append((f"{label} refusals", json.dumps([*refusals, *errors])))
        return response


def upload(client, name: str, data: bytes, centre):
    form = {
        "action": "preview",
        "centre": centre.pk,
        "source_system": "clinic-ehr",
        "file": SimpleUploadedFile(name, data),
    }
    return client.post(reverse(PAGE), form)


def preview_and_apply(shown: Shown, client, label: str, name: str, data: bytes, centre) -> None:
    preview = shown.keep(f"{label} preview", upload(client, name, data, centre), expect=200)
    assert preview.context.get("token"), (label, preview.context.get("refusals"))
    shown.keep(
        f"{label} apply", client.post(reverse(PAGE), {"action": "apply", "token": preview.context["token"]}), expect=200
    )


def test_it_keeps_patient_data_out_of_the_upload_pages_logs_and_refusals(
    captured, login, coordinator_a, centre_a, settings
):
    client = login(coordinator_a)
    shown = Shown()
    recent = (dt.date.today() - dt.timedelta(days=30)).isoformat()
    row = f"{MRN},{GIVEN},{FAMILY},{BIRTH},f,{EMAIL},{PHONE},en,yescarta,{recent},L1\n"

    preview_and_apply(shown, client, "csv", "cohort.csv", (HEADER + row).encode(), centre_a)
    assert Patient.objects.filter(centre=centre_a, mrn=MRN).exists(), "the sentinel was not imported"
    bundle = collection(fhir_patient(), car_t_procedure(recent), fhir_patient(id="twin", birthDate=f"{BIRTH}-{FAMILY}"))
    preview_and_apply(shown, client, "bundle", "bundle.json", json.dumps(bundle).encode(), centre_a)

    refused = f"{MRN}-2,{GIVEN},{FAMILY},{BIRTH}x,{FAMILY},{GIVEN} {FAMILY},{PHONE * 3},{FAMILY},{GIVEN},2031-01-01,\n"
    shown.keep(
        "csv refused record", upload(client, "cohort.csv", (HEADER + row + refused).encode(), centre_a), expect=200
    )
    latin1 = HEADER + row.replace(FAMILY, f"{FAMILY}-Muñoz")
    shown.keep("csv latin-1", upload(client, "cohort.csv", latin1.encode("latin-1"), centre_a), expect=200)
    ndjson = json.dumps(fhir_patient(name=[{"given": [GIVEN], "family": f"{FAMILY}-Muñoz"}]), ensure_ascii=False)
    shown.keep(
        "ndjson latin-1", upload(client, "Patient.ndjson", f"{ndjson}\n".encode("latin-1"), centre_a), expect=200
    )
    shown.keep("csv utf-16", upload(client, "cohort.csv", (HEADER + row).encode("utf-16"), centre_a), expect=400)
    assert len([place for place in shown.places if place[1] not in ("[]", "")]) >= 4, "too few refusals to search"

    settings.CARTWATCH = {**settings.CARTWATCH, "IMPORT_SYNC_MAX_BYTES": 64}  # the large-file path: an import job
    started = upload(client, "cohort.csv", (HEADER + row + refused).encode(), centre_a)
    assert started.status_code == 302
    jobs.import_jobs_run()
    shown.keep("job page", client.get(started["Location"]), expect=200)
    assert ImportJob.objects.get().result, "the import job did not finish"

    assert not leaks([*captured.found(), *shown.places])
