"""Insert many new rows of one model at once: ``COPY ... FROM STDIN`` on PostgreSQL, ``bulk_create`` elsewhere.

The planner writes about fifty visits per infusion, and an import plans thousands of infusions per batch. Building
a model instance per row and an INSERT through the ORM costs several times what the database spends storing the
rows, so rows are given as tuples of column values and, on PostgreSQL, streamed with COPY (its text written here for
the common types, as psycopg writes it: ``_CopyText``). The rows stored are the ones ``bulk_create`` stores from the
same values; COPY fires the same row triggers and checks the same constraints.

``rows_insert_numbered`` draws the ids from the table's own sequence before the COPY, so a caller can refer to the
new rows (a visit's reminders) without reading them back; ``rows_insert`` leaves the numbering to the table.

``rows_update`` sets values that differ from row to row in one ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL,
where ``bulk_update``'s ``CASE WHEN`` per column and row costs more to build and to run than the rows it changes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, models
from django.utils import timezone
from psycopg.adapt import PyFormat, Transformer

COPY_VENDOR = "postgresql"


def rows_insert(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Insert ``rows`` (tuples of values of ``columns``, attnames such as ``infusion_id``).

    Every other column takes its field's default, and ``auto_now``/``auto_now_add`` stamps the moment of the
    insert, as ``bulk_create`` does. Nothing is ignored on conflict: a duplicate raises
    ``IntegrityError`` as an INSERT would.
    """
    if not rows:
        return
    if connection.vendor == COPY_VENDOR:
        _copy(model, columns, rows, None)
    else:
        _bulk_create(model, columns, rows)


def rows_insert_numbered(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> list[int]:
    """As ``rows_insert``; returns the new rows' ids, in the order of ``rows``."""
    if not rows:
        return []
    if connection.vendor == COPY_VENDOR:
        ids = _ids_draw(model, len(rows))
        _copy(model, columns, rows, ids)
        return ids
    return [obj.pk for obj in _bulk_create(model, columns, rows)]


def rows_update(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Set ``columns`` (attnames) of existing rows: each of ``rows`` is (pk, *values of columns)."""
    if not rows:
        return
    opts = model._meta
    fields = [opts.pk, *(opts.get_field(name) for name in columns)]
    if connection.vendor != COPY_VENDOR:
        objs = [model(**dict(zip([field.attname for field in fields], row, strict=True))) for row in rows]
        model.objects.bulk_update(objs, list(columns), batch_size=2000)
        return
    quote = connection.ops.quote_name
    casts = ", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields)
    names = [quote(f"v{at}") for at in range(len(fields))]
    sets = ", ".join(f"{quote(field.column)} = v.{name}" for field, name in zip(fields[1:], names[1:], strict=True))
    sql = (
        f"UPDATE {quote(opts.db_table)} AS t SET {sets} FROM (VALUES {', '.join([f'({casts})'] * len(rows))}) "
        f"AS v({', '.join(names)}) WHERE t.{quote(opts.pk.column)} = v.{names[0]}"
    )
    params = [
        field.get_db_prep_save(value, connection) for row in rows for field, value in zip(fields, row, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _bulk_create(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> list[models.Model]:
    objs = [model(**dict(zip(columns, row, strict=True))) for row in rows]
    return model.objects.bulk_create(objs, batch_size=2000)


def _copy(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Sequence[Sequence],
    ids: list[int] | None,
) -> None:
    """COPY the rows, with these ids (``None``: numbered by the table's default)."""
    opts = model._meta
    given = [opts.get_field(name) for name in columns]
    names = {field.attname for field in given}
    rest = [field for field in opts.concrete_fields if field.attname not in names and not field.primary_key]
    now = timezone.now()
    defaults = tuple(_default(field, now) for field in rest)
    json_at = [i for i, field in enumerate(given) if isinstance(field, models.JSONField)]
    encoders = {i: given[i].encoder for i in json_at}
    texts: dict = {}
    quote = connection.ops.quote_name
    target = ", ".join(quote(field.column) for field in [*([opts.pk] if ids else []), *given, *rest])
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,  # IntegrityError, DataError: Django's, as for an INSERT
        cursor.cursor.copy(f"COPY {quote(opts.db_table)} ({target}) FROM STDIN") as copy,
    ):
        text = _CopyText(cursor.cursor)
        tail = "".join(["\t" + text[type(value)](value) for value in defaults]) + "\n"
        lines: list[str] = []
        for at, row in enumerate(rows):
            if json_at:
                row = list(row)
                for i in json_at:
                    row[i] = _json_text(row[i], encoders[i], texts)
            line = "\t".join([text[type(value)](value) for value in row]) + tail
            lines.append(f"{ids[at]}\t{line}" if ids else line)
            if len(lines) == LINES_PER_WRITE:
                copy.write("".join(lines))
                lines.clear()
        if lines:
            copy.write("".join(lines))


#: Lines of COPY text sent at a time.
LINES_PER_WRITE = 1000


class _CopyText(dict):
    """The text of a value in COPY's text format, by the value's type: a function of the value.

    The common types (None, booleans, integers, text, dates and times) are written as psycopg writes them, here in
    Python from a table, since psycopg's row writer adapts each value of a row anew and a row of a plan's visit has
    some thirty; anything else, and text holding a character COPY escapes, is adapted by psycopg itself."""

    def __init__(self, cursor) -> None:
        super().__init__(_COMMON_TEXT)
        self.transformer = Transformer.from_context(cursor)
        self.encoding = cursor.connection.info.encoding
        self.texts: dict[str, str] = {}
        self[str] = self.text

    def __missing__(self, kind: type) -> Callable[[Any], str]:
        found = next((base for base in kind.__mro__ if base in _COMMON_TEXT or base is str), None)
        self[kind] = self[found] if found is not None else self.adapted
        return self[kind]

    def text(self, value: str) -> str:
        """Text as it is, unless COPY escapes one of its characters; each text once, since rows repeat theirs."""
        found = self.texts.get(value)
        if found is None:
            found = self.texts[value] = value if not _COPY_SPECIAL.search(value) else self.adapted(value)
        return found

    def adapted(self, value: Any) -> str:
        """The value as psycopg adapts it (its error, for text psycopg refuses), escaped for COPY."""
        data = self.transformer.get_dumper(value, PyFormat.TEXT).dump(value)
        if data is None:
            return r"\N"
        return _COPY_ESCAPE.sub(lambda found: _COPY_ESCAPES[found.group(0)], bytes(data)).decode(self.encoding)


_COMMON_TEXT: dict[type, Callable[[Any], str]] = {
    type(None): lambda value: r"\N",
    bool: lambda value: "t" if value else "f",
    int: int.__repr__,
    dt.datetime: dt.datetime.__str__,
    dt.date: dt.date.__str__,
}
#: What COPY's text format escapes (as psycopg does), and NUL, which PostgreSQL text cannot hold.
_COPY_SPECIAL = re.compile("[\x00\b\t\n\v\f\r\\\\]")
_COPY_ESCAPE = re.compile(b"[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES = {
    b"\b": b"\\b",
    b"\t": b"\\t",
    b"\n": b"\\n",
    b"\v": b"\\v",
    b"\f": b"\\f",
    b"\r": b"\\r",
    b"\\": b"\\\\",
}


def _ids_draw(model: type[models.Model], count: int) -> list[int]:
    """``count`` new ids from the table's sequence, in one query (as many INSERTs would have drawn them)."""
    opts = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [opts.db_table, opts.pk.column, count],
        )
        return [row[0] for row in cursor.fetchall()]


def _default(field: models.Field, now: dt.datetime):
    """The value ``bulk_create`` would store for a column it was not given, ready for COPY."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    if field.has_default() and callable(field.default) and field.default not in (list, dict):
        raise ValueError(f"{field.name}: its default may differ from row to row; give it as a column")
    value = field.get_default()
    if isinstance(field, models.JSONField):
        return None if value is None else json.dumps(value, cls=field.encoder)
    return field.get_db_prep_save(value, connection)


def _json_text(value, encoder, texts: dict) -> str | None:
    """A JSON column's text; a tuple (an immutable value, such as a visit's assessment codes, the same object in many
    rows) is encoded once. Cached by identity, which the cache keeps from being reused by holding the tuple."""
    if value is None:
        return None
    if type(value) is not tuple:
        return json.dumps(value, cls=encoder)
    cached = texts.get(id(value))
    if cached is None:
        cached = texts[id(value)] = (value, json.dumps(value, cls=encoder))
    return cached[1]
