"""Cursor pagination in keyset pages: stable pages over large, changing lists, each read by one indexed range query.

DRF's cursor names the first ordering field's value and an offset past the rows that share it. Where many rows
share a value (hundreds of visits due on the same day in a large registry), each page re-reads and skips all of
that day's earlier rows, so a page costs more the further it is into the day. Here the ordering always ends with
the primary key, which makes it total, and the cursor names every field of the last row sent: the next page is the
rows after it in that order, ``(due_date, id) > (d, i)``, which PostgreSQL reads from an index on those columns
(the visit list's: the export's (due date, id), or for scheduled visits the index of open visits' due dates, see
``api.visit_list``) without touching an earlier row.

A cursor is opaque to clients: DRF's base64 query string of ``r`` (reversed, for ``previous`` links) and ``p``,
here a JSON list of the fields' values as text.
"""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field, Func, Q, QuerySet, Value
from django.db.models.lookups import GreaterThan, LessThan
from rest_framework import exceptions
from rest_framework.pagination import Cursor, CursorPagination


class Row(Func):
    """A row value, ``(a, b)``: compared as a whole, which PostgreSQL matches against a multi-column index (SQLite
    compares row values too, but knows no ``ROW`` keyword)."""

    template = "(%(expressions)s)"
    output_field = Field()


#: Reads a page: (order, after, limit) -> rows.
PageReader = Callable[[tuple[str, ...], tuple | None, int], list]


def keyset_after(order: Sequence[str]) -> tuple[str | None, list[list[tuple[int, str]]]]:
    """The condition for the rows after a position in ``order`` (field names, ``-`` for descending), as the
    ORM's and the visit list's SQL both write it.

    Where every field runs the same way it is one row-value comparison, ``(a, b) > (x, y)``, which PostgreSQL
    starts an index scan from: the operator is returned, the terms are empty. Otherwise it is expanded: any of
    the terms, each a list of (position index, operator), all of which hold (a field beyond, those before it
    equal)."""
    descending = [field.startswith("-") for field in order]
    if len(set(descending)) == 1:
        return ("<" if descending[0] else ">"), []
    return None, [[*((j, "=") for j in range(i)), (i, "<" if down else ">")] for i, down in enumerate(descending)]


def _reversed(field: str) -> str:
    return field[1:] if field.startswith("-") else f"-{field}"


class ApiCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "pk"

    def paginate_queryset(self, queryset: QuerySet, request, view=None):
        def read(order: tuple[str, ...], after: tuple | None, limit: int) -> list:
            rows = queryset if after is None else queryset.filter(self.after(order, after))
            return list(rows.order_by(*order)[:limit])

        return self.paginate_reader(read, queryset.model, request, self.get_ordering(request, queryset, view))

    def paginate_reader(self, read: PageReader, model, request, ordering: tuple[str, ...]) -> list:
        """A page of the rows ``read(order, after, limit)`` gives: up to ``limit`` rows of ``model`` in ``order``,
        after the row whose ordering values are ``after`` (None: from the start)."""
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        self.ordering = self.total_ordering(ordering)
        self.model = model
        self.cursor = self.decode_cursor(request)
        backwards = self.cursor is not None and self.cursor.reverse
        order = tuple(_reversed(field) for field in self.ordering) if backwards else self.ordering
        rows = read(order, None if self.cursor is None else self.cursor.position, self.page_size + 1)
        more = len(rows) > self.page_size
        self.page = rows[: self.page_size]
        if backwards:
            self.page.reverse()
        # Going forwards, a cursor means rows came before; going backwards, the page was reached from a later one.
        self.has_next = backwards or more
        self.has_previous = more if backwards else self.cursor is not None
        self.display_page_controls = self.has_next or self.has_previous
        return self.page

    @staticmethod
    def total_ordering(ordering: tuple[str, ...]) -> tuple[str, ...]:
        """The ordering with the primary key last, unless it is there: ties then have an order of their own."""
        names = [field.lstrip("-") for field in ordering]
        if "pk" in names or "id" in names:
            return ordering[: max(names.index(n) for n in ("pk", "id") if n in names) + 1]
        return (*ordering, "pk")

    def after(self, order: tuple[str, ...], position: tuple) -> Q:
        """The rows after ``position`` in ``order`` (``keyset_after``) as a ``Q``."""
        names = [field.lstrip("-") for field in order]
        row_operator, terms = keyset_after(order)
        if row_operator is not None:
            compare = LessThan if row_operator == "<" else GreaterThan
            return Q(compare(Row(*names), Row(*(Value(value) for value in position))))
        lookups = {"=": "exact", "<": "lt", ">": "gt"}
        condition = Q(pk__in=[])
        for term in terms:
            condition |= Q(**{f"{names[i]}__{lookups[operator]}": position[i] for i, operator in term})
        return condition

    def decode_cursor(self, request) -> Cursor | None:
        """The cursor of the request, its values as the ordering's fields hold them; a bad one is bad input (400)."""
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            tokens = parse.parse_qs(b64decode(encoded.encode("ascii"), validate=True).decode("ascii"))
            reverse = tokens.get("r", ["0"])[0] == "1"
            raw = json.loads(tokens["p"][0])
            if not isinstance(raw, list) or len(raw) != len(self.ordering):
                raise ValueError("a cursor of another ordering")
            position = tuple(
                self.field_of(name.lstrip("-")).to_python(value) for name, value in zip(self.ordering, raw, strict=True)
            )
        except (KeyError, TypeError, ValueError, UnicodeError, DjangoValidationError) as exc:
            raise exceptions.ValidationError({self.cursor_query_param: ["invalid cursor"]}) from exc
        if any(value is None for value in position):
            raise exceptions.ValidationError({self.cursor_query_param: ["invalid cursor"]})
        return Cursor(offset=0, reverse=reverse, position=position)

    def field_of(self, name: str):
        return self.model._meta.pk if name == "pk" else self.model._meta.get_field(name)

    def encode_cursor(self, cursor: Cursor) -> str:
        tokens = {"p": json.dumps([str(value) for value in cursor.position], separators=(",", ":"))}
        if cursor.reverse:
            tokens["r"] = "1"
        encoded = b64encode(parse.urlencode(tokens).encode("ascii")).decode("ascii")
        return self.url_with_cursor(encoded)

    def url_with_cursor(self, encoded: str) -> str:
        """``replace_query_param(self.base_url, cursor_query_param, encoded)``, the same URL (its parameters sorted
        by name, as DRF writes them), with the rest of the query parsed and encoded once per page, not per link:
        re-parsing the whole query for the next and previous links was a tenth of a visit page's CPU."""
        parts = self.__dict__.get("_link_parts")
        if parts is None or parts[0] != self.base_url:
            scheme, netloc, path, query, fragment = parse.urlsplit(str(self.base_url))
            params = parse.parse_qs(query, keep_blank_values=True)
            params.pop(self.cursor_query_param, None)
            key = self.cursor_query_param
            before = parse.urlencode(sorted((k, v) for k, v in params.items() if k < key), doseq=True)
            after = parse.urlencode(sorted((k, v) for k, v in params.items() if k > key), doseq=True)
            parts = self._link_parts = (self.base_url, scheme, netloc, path, fragment, before, after)
        _, scheme, netloc, path, fragment, before, after = parts
        cursor = parse.urlencode({self.cursor_query_param: encoded})
        query = "&".join(piece for piece in (before, cursor, after) if piece)
        return parse.urlunsplit((scheme, netloc, path, query, fragment))

    def position_of(self, row) -> tuple:
        """The ordering's values of a row (a model instance, or a dict such as ``visit_list_page`` reads)."""
        names = [field.lstrip("-") for field in self.ordering]
        if isinstance(row, dict):
            return tuple(row["id" if name == "pk" and "pk" not in row else name] for name in names)
        return tuple(getattr(row, name) for name in names)

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        position = self.position_of(self.page[-1]) if self.page else self.cursor.position
        return self.encode_cursor(Cursor(offset=0, reverse=False, position=position))

    def get_previous_link(self) -> str | None:
        if not self.has_previous:
            return None
        position = self.position_of(self.page[0]) if self.page else self.cursor.position
        return self.encode_cursor(Cursor(offset=0, reverse=True, position=position))

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw not in (None, "") and not (raw.isdigit() and 0 < int(raw) <= self.max_page_size):
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"a whole number from 1 to {self.max_page_size}"]}
            )
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view):
        """The bounds ``get_page_size`` enforces, stated in the schema (it said any integer, and 0 was refused)."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters
