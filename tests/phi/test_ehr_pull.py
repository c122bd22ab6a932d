"""No patient data in the logs of an EHR pull, nor in what a pull records for the admin to show (its error, its
report's refusals): the loopback Bulk Data server exports the sentinel (a Patient, a refused copy quoting it, a
broken line naming it, a CAR-T infusion displaying the name, a second cancer), and the Condition file breaks off
half way through its body on the first pull, which fails; the second pull resumes and finishes."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from surveillance.imports.pull import runs
from surveillance.models import EhrPullRun, Patient, PullStatus
from tests.imports.bulk_server import BulkServer
from tests.imports.conftest import concept
from tests.phi.sentinel import BIRTH, EMAIL, FAMILY, GIVEN, MRN, car_t_procedure, fhir_patient, leaks

pytestmark = pytest.mark.django_db
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def ndjson(*lines: dict | str) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def sentinel_export() -> dict[str, bytes]:
    """The export's files, each holding the sentinel in a line that is imported and in one that is refused."""
    infused = (timezone.localdate() - dt.timedelta(days=45)).isoformat()
    lymphoma = {
        "resourceType": "Condition",
        "id": "sentinel-lymphoma",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": concept(ICD10CM, "C84.40") | {"text": f"T-cell lymphoma of {GIVEN} {FAMILY}"},
        "subject": {"reference": "Patient/sentinel", "display": f"{GIVEN} {FAMILY} ({MRN})"},
        "onsetDateTime": timezone.localdate().isoformat(),
    }
    return {
        "Patient.000.ndjson": ndjson(
            fhir_patient(),
            fhir_patient(id="sentinel-twin", birthDate=f"{BIRTH}-{FAMILY}", gender=GIVEN),
            "{broken " + f"{GIVEN} {FAMILY} {MRN} {EMAIL}",
        ),
        "Procedure.000.ndjson": ndjson(
            car_t_procedure(infused),
            car_t_procedure(f"{BIRTH}T{FAMILY}") | {"id": "car-t-2"},
        ),
        "Condition.000.ndjson": ndjson(lymphoma, lymphoma | {"id": "lymphoma-2", "onsetDateTime": FAMILY}),
    }


@pytest.fixture
def sentinel_server(rsa_pem, pull_settings):
    server = BulkServer(rsa_pem[0].public_key(), "RS384", sentinel_export())
    yield server
    server.stop()


def test_it_keeps_patient_data_out_of_a_pull_that_fails_mid_download_then_resumes(
    captured, sentinel_server, make_connection, centre_a
):
    sentinel_server.fail["Condition.000.ndjson"] = ["drop", "500"]  # both tries of the first pull
    make_connection(sentinel_server)

    assert runs.pulls_run().failed == 1
    failed = EhrPullRun.objects.get()
    assert failed.status == PullStatus.FAILED and failed.error.startswith("file 3 of 3 (Condition)"), failed.error
    assert runs.pulls_run().done == 1
    run = EhrPullRun.objects.get()
    assert run.status == PullStatus.DONE
    assert Patient.objects.filter(centre=centre_a, mrn=MRN).exists(), "the sentinel was not imported"
    assert run.report["error_count"] >= 3, run.report["errors"]  # the twin, the broken line, the bad infusion

    shown = [("run error", failed.error), ("run error after resume", run.error)]
    shown += [("run report errors", json.dumps(run.report["errors"]))]
    assert not leaks([*captured.found(), *shown])
