"""List filters (django-filter). Filters narrow what the caller's queryset already allows; they never widen it."""

from __future__ import annotations

import django_filters as filters

from surveillance.models import FollowUpVisit, Infusion, MalignancyEvent, Patient, Reminder, VisitStatus
from surveillance.models.protocols import VisitKind


class PatientFilter(filters.FilterSet):
    centre = filters.CharFilter(field_name="centre__code", help_text="Centre code.")
    mrn = filters.CharFilter(field_name="mrn")
    updated_after = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Patient
        fields = ["centre", "mrn", "status", "ladder_stage", "source_system", "source_id", "updated_after"]


class InfusionFilter(filters.FilterSet):
    centre = filters.CharFilter(field_name="patient__centre__code", help_text="Centre code.")
    product = filters.CharFilter(field_name="product__code", help_text="Product code, e.g. yescarta.")
    infused_after = filters.DateFilter(field_name="infusion_date", lookup_expr="gte")
    infused_before = filters.DateFilter(field_name="infusion_date", lookup_expr="lte")

    class Meta:
        model = Infusion
        fields = ["patient", "centre", "product", "infused_after", "infused_before", "source_system", "source_id"]


class VisitFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(
        choices=VisitStatus.choices, distinct=False, help_text="Repeat to match several."
    )
    kind = filters.MultipleChoiceFilter(choices=VisitKind.choices, distinct=False)
    due_after = filters.DateFilter(field_name="due_date", lookup_expr="gte", help_text="Due on or after.")
    due_before = filters.DateFilter(field_name="due_date", lookup_expr="lte", help_text="Due on or before.")
    centre = filters.CharFilter(field_name="infusion__patient__centre__code", help_text="Centre code.")
    patient = filters.NumberFilter(field_name="infusion__patient_id")

    class Meta:
        model = FollowUpVisit
        fields = ["status", "kind", "due_after", "due_before", "centre", "patient", "infusion", "rule_code"]


class ReminderFilter(filters.FilterSet):
    patient = filters.NumberFilter(field_name="visit__infusion__patient_id")
    send_after_from = filters.IsoDateTimeFilter(field_name="send_after", lookup_expr="gte")
    send_after_to = filters.IsoDateTimeFilter(field_name="send_after", lookup_expr="lte")

    class Meta:
        model = Reminder
        fields = ["visit", "patient", "status", "audience", "purpose", "send_after_from", "send_after_to"]


class MalignancyEventFilter(filters.FilterSet):
    patient = filters.NumberFilter(field_name="infusion__patient_id")

    class Meta:
        model = MalignancyEvent
        fields = ["patient", "infusion", "malignancy_type", "confirmed"]
