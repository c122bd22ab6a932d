"""The front doors: `/` leads to the workspace, `/api/v1/` lists the API and says how to authenticate."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_it_sends_the_front_door_to_the_workspace(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_it_lists_the_resources_without_a_token():
    response = APIClient().get("/api/v1/")
    assert response.status_code == 200
    body = response.json()
    assert "Bearer" in body["authentication"]
    assert body["resources"]["patients"]["url"] == "http://testserver/api/v1/patients"
    assert body["resources"]["import-fhir"]["url"] == "http://testserver/api/v1/import/fhir"
    assert body["docs"] == "http://testserver/api/docs/"


def test_it_explains_authentication_in_the_api_docs(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "Authorization: Bearer" in schema["info"]["description"]
