"""API requests that carry a token take a shorter middleware chain in the web role's WSGI application: no
session, no CSRF cookie, the API's own fixed policy; every other request takes the full chain as before."""

from __future__ import annotations

from wsgiref.util import setup_testing_defaults

import pytest

from config.wsgi import application
from surveillance.api.token_requests import API_CONTENT_SECURITY_POLICY, carries_api_token
from surveillance.models import AuditEntry

pytestmark = pytest.mark.django_db


def wsgi_get(path: str, **headers: str) -> tuple[int, dict[str, list[str]], bytes]:
    """A GET sent straight to the WSGI application as gunicorn sends it: status, headers (by lower-case name) and
    body."""
    path, _, query = path.partition("?")
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET", **headers}
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = int(status.split()[0])
        answer["headers"] = {}
        for name, value in response_headers:
            answer["headers"].setdefault(name.lower(), []).append(value)

    chunks = application(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], answer["headers"], body


def test_it_serves_a_token_request_without_a_session_and_audits_it(planned_a, token_a, connection_kept_open):
    status, headers, body = wsgi_get("/api/v1/visits?status=scheduled", HTTP_AUTHORIZATION=f"Bearer {token_a[1]}")
    assert status == 200 and b'"results"' in body
    assert "set-cookie" not in headers
    assert "Cookie" not in ", ".join(headers.get("vary", []))
    assert headers["content-security-policy"] == [API_CONTENT_SECURITY_POLICY]
    assert (headers["x-frame-options"], headers["x-content-type-options"]) == (["DENY"], ["nosniff"])
    entry = AuditEntry.objects.get(action="api_get")
    assert entry.object_id == "/api/v1/visits" and "epic-a" in entry.actor_label


def test_it_answers_an_unknown_token_with_a_problem_and_no_cookie(db, connection_kept_open):
    status, headers, _ = wsgi_get("/api/v1/visits", HTTP_AUTHORIZATION="Bearer cwt_unknown")
    assert status == 401
    assert headers["content-type"] == ["application/problem+json"]
    assert "set-cookie" not in headers
    assert not AuditEntry.objects.filter(action="api_get").exists()


def test_it_serves_requests_without_a_token_through_the_full_chain(db, connection_kept_open):
    status, headers, _ = wsgi_get("/api/v1/visits")
    assert status in (401, 403)
    assert "default-src 'self'" in headers["content-security-policy"][0]  # the pages' policy
    status, headers, _ = wsgi_get("/admin/login/", HTTP_AUTHORIZATION="Bearer cwt_unknown")
    assert status == 200
    assert any("csrftoken=" in cookie for cookie in headers["set-cookie"])  # the sign-in form's CSRF cookie


@pytest.mark.parametrize(
    ("path", "authorization", "routed"),
    [
        ("/api/v1/visits", "Bearer cwt_x", True),
        ("/api/v1/visits", "bearer cwt_x", True),
        ("/api/v1/visits", "Token cwt_x", True),
        ("/api/v1/visits", "Basic dXNlcg==", False),
        ("/api/v1/visits", "", False),
        ("/admin/", "Bearer cwt_x", False),
        ("/apis/", "Bearer cwt_x", False),
    ],
)
def test_it_routes_on_the_api_path_and_a_token_scheme(path, authorization, routed):
    assert carries_api_token({"PATH_INFO": path, "HTTP_AUTHORIZATION": authorization}) is routed
