"""The admin's forms, lists and read-only fields name every model field in the reader's language, with its help
text, and giving them their labels leaves the migration state as it was."""

from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse
from django.utils.functional import Promise

from surveillance.models import StaffPreference

pytestmark = pytest.mark.django_db


def test_it_shows_a_patients_form_in_spanish(login, coordinator_a, planned, centre_a):
    StaffPreference.objects.create(user=coordinator_a, language="es")
    patient = planned(centre_a, given_name="Lucía").patient
    body = login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[patient.pk])).content.decode()
    for spanish in ("Fecha de nacimiento", "Apellidos", "Idioma preferido", "Acepta recordatorios por correo"):
        assert spanish in body, spanish
    for english in ("Birth date", "Family name", "Preferred language", "Consents to reminders by email"):
        assert english not in body, english


def test_it_keeps_the_english_labels_django_derives(login, coordinator_a, planned, centre_a):
    patient = planned(centre_a).patient
    body = login(coordinator_a).get(reverse("admin:surveillance_patient_change", args=[patient.pk])).content.decode()
    assert "Birth date" in body and "Consents to reminders by email." in body


def test_it_marks_every_field_of_the_workspace_for_translation():
    unmarked = [
        f"{model.__name__}.{field.name}"
        for model in admin.site._registry
        if model._meta.app_label == "surveillance"
        for field in model._meta.get_fields()
        if getattr(field, "concrete", False)
        and not field.auto_created
        and not (
            isinstance(field.verbose_name, Promise) and (not field.help_text or isinstance(field.help_text, Promise))
        )
    ]
    assert unmarked == []


def test_it_labels_the_fields_without_a_migration():
    out = io.StringIO()
    call_command("makemigrations", "surveillance", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()
