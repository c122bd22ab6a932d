"""Every /api/ error in one shape, RFC 9457 problem details (application/problem+json), including the answers
Django gives without DRF; the FHIR import answers an OperationOutcome instead. Never an HTML page, never a 500
for bad input."""

from __future__ import annotations

import pytest

from surveillance.api import views

pytestmark = pytest.mark.django_db

PROBLEM = {"type", "title", "status", "code", "detail"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM and (body["type"], body["status"], body["code"]) == ("about:blank", status, code)
    return body


@pytest.mark.parametrize(
    ("path", "code"),
    [("/api/v1/no-such-collection", "not_found"), ("/api/v1/patients/abc", "not_found"), ("/api/nothing", "not_found")],
)
def test_it_answers_an_unknown_path_or_id_as_a_problem(api_a, path, code):
    assert assert_problem(api_a.get(path), 404, code)["title"] == "Not Found"


def test_it_answers_a_wrong_method_as_a_problem(api_a):
    assert_problem(api_a.delete("/api/v1/centres"), 405, "method_not_allowed")


def test_it_answers_malformed_and_deeply_nested_json_with_a_400(api_a):
    assert_problem(api_a.generic("POST", "/api/v1/patients", "{bad", "application/json"), 400, "parse_error")
    nested = "[" * 100_000 + "]" * 100_000
    assert_problem(api_a.generic("POST", "/api/v1/patients", nested, "application/json"), 400, "parse_error")


def test_it_answers_a_ten_megabyte_body_with_a_413(api_a):
    body = '{"mrn": "' + "x" * 10_000_000 + '"}'
    assert_problem(api_a.generic("POST", "/api/v1/patients", body, "application/json"), 413, "payload_too_large")


def test_it_answers_an_unexpected_failure_as_a_problem_without_its_message(api_a, monkeypatch, caplog):
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("secret detail " + "MRN-" + "123")  # a message that quotes input

    monkeypatch.setattr(views.CentreViewSet, "list", broken)
    api_a.raise_request_exception = False
    body = assert_problem(api_a.get("/api/v1/centres"), 500, "server_error")
    assert "MRN-123" not in str(body)
    assert "api unhandled RuntimeError" in caplog.text and "MRN-123" not in caplog.text


def test_it_keeps_operation_outcome_on_the_fhir_import(api_a, monkeypatch):
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.FhirImportView, "post", broken)
    api_a.raise_request_exception = False
    response = api_a.generic("POST", "/api/v1/import/fhir", "{}", "application/fhir+json")
    assert response.status_code == 500 and response["Content-Type"] == "application/fhir+json"
    assert response.json()["resourceType"] == "OperationOutcome"


def test_it_gives_validation_errors_field_messages(api_a):
    body = assert_problem(api_a.get("/api/v1/patients?page_size=0"), 400, "invalid")
    assert body["fields"] == {"page_size": ["a whole number from 1 to 500"]}
