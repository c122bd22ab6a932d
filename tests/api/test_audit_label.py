"""The token's name labels the audit entries of its own request only, however that request ends."""

from __future__ import annotations

import pytest

from surveillance.api import views
from surveillance.models import audit as audit_models

pytestmark = pytest.mark.django_db


def test_it_forgets_the_token_after_a_request_that_failed(api_a, monkeypatch):
    def broken(self, request, *args, **kwargs):
        raise RuntimeError("a bug in a view")

    monkeypatch.setattr(views.CentreViewSet, "list", broken)
    api_a.raise_request_exception = False
    assert api_a.get("/api/v1/centres").status_code == 500
    assert audit_models.request_actor_label.get() is None


def test_it_forgets_the_token_after_a_request_that_succeeded(api_a):
    assert api_a.get("/api/v1/centres").status_code == 200
    assert audit_models.request_actor_label.get() is None
