"""A list page renders the rows ``visit_list_page`` reads (written by PostgreSQL in UTC, else by
``RowListSerializer``) exactly as the serializer renders a visit, whatever the active time zone and language."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone, translation
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from surveillance.api.renderers import fragments_decoded
from surveillance.api.serializers import VisitSerializer, column_renderer
from surveillance.api.visit_list import page_data, visit_list_page
from surveillance.care import lifecycle
from surveillance.models import FollowUpVisit, VisitStatus


def page(infusion) -> list:
    rows = visit_list_page(None, {"infusion": infusion.pk}, ("due_date", "pk"), None, 1000)
    return fragments_decoded(page_data(rows, lambda rows: VisitSerializer(rows, many=True).data))


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_it_renders_a_row_as_the_serializer_renders_the_visit(planned_a, zone):
    visits = FollowUpVisit.objects.filter(infusion=planned_a[1]).order_by("due_date", "pk")
    done = visits.filter(status=VisitStatus.SCHEDULED).first()
    lifecycle.visit_mark_completed(
        done, completed_on=dt.date.today(), results={"cbc": "normal", "ecog": 1.5, "big": 2**70}
    )
    with timezone.override(zone), translation.override("es"):
        rows = page(planned_a[1])
        one_by_one = [VisitSerializer(visit).data for visit in visits.select_related("infusion__patient__centre")]
    assert JSONRenderer().render(rows) == JSONRenderer().render(one_by_one)
    assert any(row["results"] == {"cbc": "normal", "ecog": 1.5, "big": 2**70} for row in rows)


def test_it_leaves_to_the_field_what_it_renders_differently():
    counted = serializers.IntegerField()
    as_text = serializers.DateTimeField(format="%d/%m/%Y")
    assert column_renderer(counted) is None
    when = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
    assert column_renderer(as_text)(when) == "01/03/2026"
    assert column_renderer(serializers.DateTimeField())(when) == "2026-03-01T12:30:00Z"
    assert json.loads(json.dumps(column_renderer(serializers.DateField())(when.date()))) == "2026-03-01"
