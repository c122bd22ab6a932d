"""No patient data in the logs of an EHR pull, nor in what a pull records for the admin to show (its error, its
report's refusals): the loopback Bulk Data server exports the sentinel (a Patient, a refused copy quoting it, a
broken line naming it, a CAR-T infusion displaying the name, a second cancer). The first pull's export fails at
the EHR, which says on what (quoting the sentinel, as an OperationOutcome's free text may); the second breaks off
mid-download; the third resumes and finishes."""

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


def test_it_keeps_patient_data_out_of_a_pull_that_fails_then_resumes(
    captured, sentinel_server, make_connection, centre_a
):
    sentinel_server.diagnostics = f"export failed at Condition/sentinel-lymphoma of {FAMILY}, {GIVEN} ({MRN})"
    make_connection(sentinel_server)
    errors = []

    sentinel_server.status_codes = [400]  # the EHR reports the export failed, and on what
    assert runs.pulls_run().failed == 1
    errors.append(("run error, export failed", EhrPullRun.objects.get().error))
    sentinel_server.fail["Condition.000.ndjson"] = ["drop", "500"]  # both tries of the second pull
    assert runs.pulls_run().failed == 1
    errors.append(("run error, download failed", EhrPullRun.objects.get().error))
    assert runs.pulls_run().done == 1

    run = EhrPullRun.objects.get()
    assert run.status == PullStatus.DONE and len(sentinel_server.kickoffs) == 2
    assert errors[0][1].startswith("the EHR reports the export failed (HTTP 400"), errors
    assert errors[1][1].startswith("file 3 of 3 (Condition)"), errors
    assert Patient.objects.filter(centre=centre_a, mrn=MRN).exists(), "the sentinel was not imported"
    assert run.report["error_count"] >= 3, run.report["errors"]  # the twin, the broken line, the bad infusion
    errors.append(("run report errors", json.dumps(run.report["errors"])))
    assert not leaks([*captured.found(), *errors])
