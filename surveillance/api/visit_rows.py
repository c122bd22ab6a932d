"""The visit list's rows written as JSON by PostgreSQL, as the serializer would write them.

A list page rendered 50 rows of 19 fields through ``RowListSerializer`` and then wrote them with orjson: a sixth of
the page's CPU in the web process, for values that PostgreSQL writes in its own JSON as the serializer does (ids,
text, dates, the time in UTC). Here the statement writes each row's runs of such fields with ``row_to_json``
(compact, in the serializer's key order); the fields it would write otherwise are written by Python between them:
the assessments and their labels (written once per page for each different list of codes) and the results (free
JSON, whose numbers and spacing PostgreSQL keeps as stored). A row is then an ``orjson.Fragment`` that the renderer
copies into the page as it is, with its patient (for the audit trail) and its ordering values (for the cursors)
beside it.

Only where PostgreSQL writes the same text: on PostgreSQL, with the serializer's time zone UTC (the API's). A test
compares the page, byte for byte, with the serializer's rendering of the same visits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from django.db import connection
from django.utils import timezone
from rest_framework import serializers
from rest_framework.settings import api_settings

from surveillance.api.renderers import FastJSONRenderer
from surveillance.api.serializers import VisitSerializer, codes_of, column_renderer, iso_format, stored_json

#: The key of a written row's JSON.
JSON = "json"

#: An aware time in UTC as ``DateTimeField`` writes it: ISO 8601, microseconds only when there are some, ``Z``.
_UTC_TIME = (
    "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN date_trunc('second', {column}) = {column} THEN ''"
    " ELSE to_char({column} AT TIME ZONE 'UTC', '.US') END || 'Z'"
)


#: Makes, once per page, the writer of a field's column as ``"name":<JSON>``.
WriterMaker = Callable[[], Callable[[str | None], str]]


@dataclass(frozen=True)
class Written:
    """How a page's rows are selected and put together: the select list; for each of its leading columns, None
    for a run of fields PostgreSQL wrote, or what makes the Python writer of one field; the keys of the columns
    after them."""

    select: str
    pieces: tuple[WriterMaker | None, ...]
    tail_keys: tuple[str, ...]


def in_utc() -> bool:
    """Whether the serializer writes times in UTC (the API's zone): the only zone the statement writes them in."""
    zone = timezone.get_current_timezone()
    return zone is dt.UTC or getattr(zone, "key", None) == "UTC"


def _sql_kind(field: serializers.Field) -> str | None:
    """How PostgreSQL writes the field as the serializer does: "as stored", "utc time", or None (Python writes it)."""
    kind = type(field)
    if kind is serializers.JSONField or getattr(field, "column_renderer", None) is not None:
        return None  # free JSON (PostgreSQL keeps its spacing and numbers as stored) or a field of its own
    if kind is serializers.DateTimeField:
        if hasattr(field, "timezone"):  # a zone of its own, not the request's
            return None
        return "utc time" if iso_format(field, api_settings.DATETIME_FORMAT) else None
    if kind is serializers.DateField:
        return "as stored" if iso_format(field, api_settings.DATE_FORMAT) else None
    return "as stored" if column_renderer(field) is None else None


def _python_writer(field: serializers.Field) -> WriterMaker:
    """What makes, once per page, the writer of the field's column. Results are written as the renderer writes
    their decoded value ("{}" as it is); the assessments' fields (decoded by ``codes_of``) once for each different
    list of codes: they repeat down a page."""
    render = FastJSONRenderer().render
    prefix = f"{orjson.dumps(field.field_name).decode()}:"
    if type(field) is serializers.JSONField and field.field_name not in VisitSerializer.ROW_KEYS:

        def free_json() -> Callable[[str | None], str]:
            def write(text: str | None) -> str:
                return prefix + ("{}" if text == "{}" else render(stored_json(text)).decode() or "null")

            return write

        return free_json

    def per_page() -> Callable[[str | None], str]:
        renderer = column_renderer(field)
        shown: dict[str | None, str] = {}

        def write(text: str | None) -> str:
            found = shown.get(text)
            if found is None:
                value = None if text is None else codes_of(text)
                if value is not None:
                    value = renderer(value) if renderer is not None else list(value)
                found = shown[text] = prefix + (render(value).decode() or "null")
            return found

        return write

    return per_page


def written(columns: tuple[tuple[str, str], ...], tail: tuple[tuple[str, str], ...]) -> Written:
    """The select list writing ``VisitSerializer``'s fields from ``columns`` (row key -> SQL), then ``tail``'s
    columns as they are (the patient, the ordering values)."""
    sql_of = dict(columns)
    keys = VisitSerializer.ROW_KEYS
    quote = connection.ops.quote_name
    select: list[str] = []
    pieces: list[WriterMaker | None] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            select.append(f"(SELECT row_to_json(r) FROM (SELECT {', '.join(run)}) r)::text")
            pieces.append(None)
            run.clear()

    for field in VisitSerializer()._readable_fields:
        name = field.field_name
        column = sql_of[keys.get(name, name)]
        kind = _sql_kind(field)
        if kind is None:
            close_run()
            select.append(column)
            pieces.append(_python_writer(field))
        else:
            run.append(f"{_UTC_TIME.format(column=column) if kind == 'utc time' else column} AS {quote(name)}")
    close_run()
    select.extend(sql for _key, sql in tail)
    return Written(", ".join(select), tuple(pieces), tuple(key for key, _sql in tail))


def written_rows(plan: Written, rows: Sequence[tuple]) -> list[dict]:
    """Each row as ``{JSON: its fragment, tail key: value...}``: the runs PostgreSQL wrote, each without its
    object's braces, and the fields Python writes, joined into one object."""
    writers = [None if make is None else make() for make in plan.pieces]
    count = len(writers)
    out = []
    for row in rows:
        parts = [
            value[1:-1] if write is None else write(value) for write, value in zip(writers, row[:count], strict=True)
        ]
        item = dict(zip(plan.tail_keys, row[count:], strict=True))
        item[JSON] = orjson.Fragment("{" + ",".join(parts) + "}")
        out.append(item)
    return out
