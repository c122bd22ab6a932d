"""The OpenAPI schema validates, documents the errors of every operation, and the API keeps to it under fuzzing.

Schemathesis generates requests from the schema and sends them in-process to the WSGI application with a
read-write token of centre A (bounded: 30 examples per operation, derandomised, so CI stays quick), with every
check schemathesis has: no 5xx; documented status codes, content types, headers and bodies; schema-valid input
accepted (or refused with 400 for what OpenAPI cannot say) and schema-invalid input refused.
"""

from __future__ import annotations

import schemathesis
import yaml
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from config.wsgi import application
from surveillance.api.auth import api_token_create


def test_it_generates_a_valid_schema_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)
            if "{id}" in path:
                assert "404" in operation["responses"], (method, path)


def test_it_serves_the_schema_and_the_docs_without_a_token(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
    assert b"cdn" not in docs.content.lower()  # served from the service itself


#: Every check schemathesis has. A schema-valid request may still be refused with 400 where the rule cannot be said
#: in OpenAPI: an id of another centre's (or no) object, an end date before a start date, an opaque cursor that is
#: not one of ours, an EHR file whose content is wrong; and with 422 when its Idempotency-Key was already used for
#: another request (a rule across requests: the fuzzer draws the same key for different bodies).
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422", "429"]}
        }
    }
)


def test_it_keeps_to_its_schema_under_fuzzing(transactional_db, planned_a, centre_a, connection_kept_open):
    """Each request commits on its own, as in production (a refused statement inside one test transaction would
    spoil every later request)."""
    raw = api_token_create("fuzzer", [centre_a])[1]
    headers = {"Authorization": f"Bearer {raw}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=FUZZ_CONFIG)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
