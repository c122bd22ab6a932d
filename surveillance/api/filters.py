"""List filters (django-filter). Filters narrow what the caller's queryset already allows; they never widen it.

A filter on a related object takes its id as a plain number (``IdFilter``), never a model choice: a choice
would be checked against every row of the table, so a foreign id (200, empty) and one that does not exist (400)
would answer differently, and the difference would tell a caller what other centres hold.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import django_filters as filters
from django.http import QueryDict

from surveillance.models import FollowUpVisit, Infusion, MalignancyEvent, Patient, Reminder, VisitStatus
from surveillance.models.protocols import VisitKind

#: The largest id a bigint holds.
_BIGINT = 2**63 - 1


def id_possible(value: int | Decimal) -> bool:
    """Whether a row can have this number as its id: a whole number a bigint holds."""
    return int(value) == value and -_BIGINT - 1 <= value <= _BIGINT


class IdFilter(filters.NumberFilter):
    """A related object's id. A number no row can have as its id (a fraction, or beyond a bigint) matches nothing,
    as PostgreSQL's lookups treat an out-of-range number; it is never rounded to another id, nor handed to SQLite's
    driver, which fails on an integer of more than 64 bits."""

    def filter(self, qs, value):
        if value is not None and not id_possible(value):
            return qs.none()
        return super().filter(qs, value)


class StaticFilterSet(filters.FilterSet):
    """A filter set whose form does not depend on the request: its form class is built once per process, not on
    every list request (where it cost as much as the list query).

    Its filters are copied one level deep for each request, not deep-copied as django-filter does: a filter's
    request state is its ``model`` and ``parent``, set here on the copy, and nothing else on it changes while it
    filters (the form, which does hold the request's values, is built apart). The deep copy cost a fifth of a
    list request's own time. Likewise each form shares its class's fields (``SharedFields``) rather than
    deep-copying them as Django's forms do: these forms never change a field, they only clean values with it.
    """

    _form_classes: dict[type, type] = {}

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {name: copy.copy(filter_) for name, filter_ in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self

    def get_form_class(self):
        form = self._form_classes.get(type(self))
        if form is None:
            form = super().get_form_class()
            form.base_fields = SharedFields(form.base_fields)
            for name, filter_ in self.filters.items():
                # A filter builds its form field on first use (``Filter.field``), translating its label; the copies
                # of later requests start with this one instead (some filters use it to filter).
                self.base_filters[name]._field = filter_.field
            self._form_classes[type(self)] = form
        return form


class SharedFields(dict):
    """A form class's fields, which each of its forms uses as they are: Django deep-copies them for every form (so
    that a form may change its own), which cost a twentieth of a list request here."""

    def __deepcopy__(self, memo) -> dict:
        return dict(self)


class PatientFilter(StaticFilterSet):
    centre = filters.CharFilter(field_name="centre__code", help_text="Centre code.")
    mrn = filters.CharFilter(field_name="mrn")
    updated_after = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Patient
        fields = ["centre", "mrn", "status", "ladder_stage", "source_system", "source_id", "updated_after"]


class InfusionFilter(StaticFilterSet):
    patient = IdFilter(field_name="patient_id")
    centre = filters.CharFilter(field_name="patient__centre__code", help_text="Centre code.")
    product = filters.CharFilter(field_name="product__code", help_text="Product code, e.g. yescarta.")
    infused_after = filters.DateFilter(field_name="infusion_date", lookup_expr="gte")
    infused_before = filters.DateFilter(field_name="infusion_date", lookup_expr="lte")

    class Meta:
        model = Infusion
        fields = ["patient", "centre", "product", "infused_after", "infused_before", "source_system", "source_id"]


class VisitFilter(StaticFilterSet):
    status = filters.MultipleChoiceFilter(
        choices=VisitStatus.choices, distinct=False, help_text="Repeat to match several."
    )
    kind = filters.MultipleChoiceFilter(choices=VisitKind.choices, distinct=False)
    due_after = filters.DateFilter(field_name="due_date", lookup_expr="gte", help_text="Due on or after.")
    due_before = filters.DateFilter(field_name="due_date", lookup_expr="lte", help_text="Due on or before.")
    centre = filters.CharFilter(field_name="infusion__patient__centre__code", help_text="Centre code.")
    patient = IdFilter(field_name="infusion__patient_id")
    infusion = IdFilter(field_name="infusion_id")

    class Meta:
        model = FollowUpVisit
        fields = ["status", "kind", "due_after", "due_before", "centre", "patient", "infusion", "rule_code"]


class ReminderFilter(StaticFilterSet):
    visit = IdFilter(field_name="visit_id")
    patient = IdFilter(field_name="visit__infusion__patient_id")
    send_after_from = filters.IsoDateTimeFilter(field_name="send_after", lookup_expr="gte")
    send_after_to = filters.IsoDateTimeFilter(field_name="send_after", lookup_expr="lte")

    class Meta:
        model = Reminder
        fields = ["visit", "patient", "status", "audience", "purpose", "send_after_from", "send_after_to"]


class MalignancyEventFilter(StaticFilterSet):
    patient = IdFilter(field_name="infusion__patient_id")
    infusion = IdFilter(field_name="infusion_id")

    class Meta:
        model = MalignancyEvent
        fields = ["patient", "infusion", "malignancy_type", "confirmed"]
