"""The API's JSON renderer writes what DRF's own renderer writes, byte for byte, only faster."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
import zoneinfo

from django.utils.translation import gettext_lazy
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from surveillance.api.renderers import FastJSONRenderer, fragments_decoded

TRICKY = {
    "text": 'Ünïcödé ✓ \u2028 \u2029 \x00 \x1f \x7f \t\n"\\ </script>',
    "dates": [dt.date(2026, 2, 28), dt.datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)],
    "zoned": dt.datetime(2026, 7, 1, 9, 0, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    "naive": dt.datetime(2026, 7, 1, 9, 0),
    "time": dt.time(8, 15),
    "span": dt.timedelta(hours=36),
    "lazy": gettext_lazy("Surveillance"),
    "ids": (uuid.UUID(int=7), decimal.Decimal("1.10")),
    "floats": [0.1, 1.5, 100.0, 1e16, 1e22, -0.0, 1e-4, 9.99e-5, 2.5e-05, 1e-07, 1e-10, 5e-324, 1.7976931348623157e308],
    "ints": [0, -1, 2**63 - 1, -(2**63), True, False, None],
    "nested": {"a": [{"b": [[], {}]}], "": ""},
}


def test_it_writes_what_drfs_renderer_writes():
    assert FastJSONRenderer().render(TRICKY) == JSONRenderer().render(TRICKY)


def test_it_leaves_to_drfs_renderer_what_orjson_does_not_write_alike():
    for data in ({"big": 2**64}, {1: "key that is a number"}, {"tiny": 3e-06}, {"text": "written 1e-5"}):
        assert FastJSONRenderer().render(data) == JSONRenderer().render(data)
    pretty = "application/json; indent=2"
    assert FastJSONRenderer().render(TRICKY, pretty) == JSONRenderer().render(TRICKY, pretty)
    assert FastJSONRenderer().render(None) == b""


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_it_writes_any_json_value_as_drfs_renderer_does(value):
    assert FastJSONRenderer().render(value) == JSONRenderer().render(value)


def test_it_answers_the_api_with_the_same_bytes(api_a, planned_a):
    for url in ("/api/v1/visits?page_size=100", f"/api/v1/patients/{planned_a[0].pk}/careplan", "/api/v1/protocols"):
        response = api_a.get(url)
        assert response.status_code == 200
        assert response.content == JSONRenderer().render(fragments_decoded(response.data))
