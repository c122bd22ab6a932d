"""SMART Backend Services: the signed client assertion the EHR checks, the token kept for the pull, and a refused
client or a missing key recorded on the run as a clear failure (never an error page, never an export asked for)."""

from __future__ import annotations

import time

import jwt
import pytest
from jwt.algorithms import ECAlgorithm

from surveillance.imports.pull import runs
from surveillance.imports.pull.smart_auth import client_assertion
from surveillance.models import EhrPullRun, Patient, PullStatus
from tests.imports.bulk_server import CLIENT_ID, KEY_ID, BulkServer, ec_key, export_files, rsa_key

pytestmark = pytest.mark.django_db


def test_it_signs_an_assertion_for_the_token_url_that_expires_within_five_minutes(
    bulk_server, make_connection, rsa_pem
):
    connection = make_connection(bulk_server)
    before = time.time()
    first, second = client_assertion(connection), client_assertion(connection)
    assert jwt.get_unverified_header(first) == {"alg": "RS384", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(first, rsa_pem[0].public_key(), algorithms=["RS384"], audience=bulk_server.token_url)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert before < claims["exp"] <= before + 300
    other = jwt.decode(second, rsa_pem[0].public_key(), algorithms=["RS384"], audience=bulk_server.token_url)
    assert claims["jti"] != other["jti"]


def test_it_pulls_with_an_es384_jwk_from_the_environment_and_one_token(pull_settings, make_connection, monkeypatch):
    key = ec_key()
    monkeypatch.setenv("CARTWATCH_TEST_EHR_JWK", ECAlgorithm.to_jwk(key))
    server = BulkServer(key.public_key(), "ES384", export_files(encounters=20))
    try:
        make_connection(server, algorithm="ES384", private_key_ref="env:CARTWATCH_TEST_EHR_JWK")
        assert runs.pulls_run().done == 1
    finally:
        server.stop()
    assert server.refusals == []
    assert server.token_requests == 1  # kept for the kick-off, the polls and every file
    assert Patient.objects.count() == 11


def test_it_records_a_refused_assertion_without_asking_for_an_export(pull_settings, make_connection, client):
    server = BulkServer(rsa_key().public_key(), "RS384", export_files())  # the EHR holds another public key
    try:
        connection = make_connection(server)
        assert runs.pulls_run().failed == 1
    finally:
        server.stop()
    run = EhrPullRun.objects.get()
    assert run.status == PullStatus.FAILED
    assert run.error == "the token endpoint refused the client (HTTP 401, invalid_client: client assertion refused)"
    assert server.refusals == ["Signature verification failed"]
    assert server.kickoffs == [] and Patient.objects.count() == 0
    health = client.get("/health/").json()
    assert health["ehr_pull"]["failing"] == [connection.pk]


def test_it_names_a_key_variable_that_is_not_set(bulk_server, make_connection, monkeypatch):
    monkeypatch.delenv("CARTWATCH_TEST_NO_SUCH_KEY", raising=False)
    make_connection(bulk_server, private_key_ref="env:CARTWATCH_TEST_NO_SUCH_KEY")
    assert runs.pulls_run().failed == 1
    assert (
        EhrPullRun.objects.get().error == "private key: the environment variable CARTWATCH_TEST_NO_SUCH_KEY is not set"
    )
    assert bulk_server.token_requests == 0


def test_it_refuses_a_key_of_the_wrong_kind(bulk_server, make_connection):
    make_connection(bulk_server, algorithm="ES384")  # an RSA key in the file
    assert runs.pulls_run().failed == 1
    assert EhrPullRun.objects.get().error == "private key: not a private key for ES384"


def test_it_asks_for_a_new_token_when_the_ehr_refuses_the_one_kept(bulk_server, make_connection):
    make_connection(bulk_server)
    assert runs.pulls_run().done == 1
    bulk_server.tokens.clear()  # the EHR revoked it before its time
    assert runs.pulls_run().done == 1
    assert bulk_server.token_requests == 2
