"""The home page: today's date and the worklists with their counts; the raw model lists only under
"Administration", for those who administer (superusers, and staff holding a permission no clinical role has)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

pytestmark = pytest.mark.django_db
MODEL_LINK = 'href="/admin/surveillance/cartproduct/"'


def test_it_shows_the_worklists_and_no_model_lists_to_a_coordinator(login, coordinator_a, today):
    response = login(coordinator_a).get(reverse("admin:index"))
    body = response.content.decode()
    assert 'id="worklists"' in body and 'id="today"' in body
    assert response.context["administers"] is False
    assert "Administration" not in body and MODEL_LINK not in body
    assert 'href="/admin/surveillance/patient/"' in body  # finding a patient stays one click away


@pytest.mark.parametrize("persona", ["physician_a", "auditor"])
def test_it_hides_the_model_lists_from_every_clinical_role(login, persona, request):
    body = login(request.getfixturevalue(persona)).get(reverse("admin:index")).content.decode()
    assert "Administration" not in body and MODEL_LINK not in body


def test_it_shows_the_model_lists_under_administration_to_a_superuser(login, django_user_model, centre_a):
    admin = django_user_model.objects.create_superuser("root", password="correct-horse-battery")
    body = login(admin).get(reverse("admin:index")).content.decode()
    assert '<section id="administration">' in body and MODEL_LINK in body
    assert body.index('id="worklists"') < body.index('id="administration"')


def test_it_counts_a_permission_beyond_the_roles_as_administering(login, coordinator_a):
    coordinator_a.user_permissions.add(Permission.objects.get(codename="change_cartproduct"))
    body = login(coordinator_a).get(reverse("admin:index")).content.decode()
    assert '<section id="administration">' in body and MODEL_LINK in body
