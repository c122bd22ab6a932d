"""A list row's selection box is the markup Django's admin writes, without the form renderer's templates (which
cost a page of 50 rows more than the rest of the list)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.utils import translation

from surveillance.models import FollowUpVisit, Patient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("language", ["en", "es"])
def test_it_writes_each_rows_selection_box_as_djangos_widget_does(language, planned, centre_a):
    infusion = planned(centre_a)
    patient = Patient.objects.get(pk=infusion.patient_id)
    patient.family_name = "O'Brien <Ruiz> & Co"
    patient.save()
    visit = FollowUpVisit.objects.filter(infusion=infusion).first()

    with translation.override(language):
        for obj in (patient, visit, infusion):
            model_admin = admin.site._registry[type(obj)]
            assert model_admin.action_checkbox(obj) == admin.ModelAdmin.action_checkbox(model_admin, obj)


def test_it_ticks_rows_by_the_box_the_actions_script_reads(planned, centre_a, login, coordinator_a):
    from django.urls import reverse

    visit = FollowUpVisit.objects.filter(infusion=planned(centre_a)).order_by("due_date").first()

    page = login(coordinator_a).get(reverse("admin:surveillance_followupvisit_changelist")).content.decode()

    assert f'<input type="checkbox" name="_selected_action" value="{visit.pk}" class="action-select"' in page
