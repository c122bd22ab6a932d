"""The visit list's pages, each read by one SQL statement written for it.

The visit list is the request an EHR makes most: the visits due in a window, page after page. Built through the
ORM from django-filter's filters, a page cost the web process about 7 ms of CPU before its first row arrived,
several times the statement it ran. Here the filters' cleaned values (``VisitFilter`` still validates every
request, so a bad value is the same 400) and the page's keyset go straight into a statement over the columns
``VisitSerializer.rows`` selects, under the same keys, so the same serializer renders the rows.

Every statement is scoped to the caller's centres, as ``scope`` would scope the queryset. A test compares this
path with the ORM's over filters, orderings and cursors.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence

import psycopg
from django.db import connection
from django.db.models.sql import Query

from surveillance.api import visit_rows
from surveillance.api.filters import id_possible
from surveillance.api.pagination import keyset_after
from surveillance.api.serializers import VisitSerializer, codes_of, stored_json
from surveillance.db.prepared import PreparingCursor, counted_prepared_cursor
from surveillance.models import FollowUpVisit, Infusion, Patient, TreatmentCentre, VisitStatus
from surveillance.models.visits import OPEN_DUE


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def _visit_column(name: str) -> str:
    """A visit field's column, qualified and quoted (worked out once per process: the filters name a few)."""
    field = FollowUpVisit._meta.pk if name in ("pk", "id") else FollowUpVisit._meta.get_field(name)
    return f"v.{connection.ops.quote_name(field.column)}"


def _columns() -> list[tuple[str, str]]:
    """(row key, SQL) of each column, as ``VisitSerializer.rows`` names them."""
    own = [
        name
        for name in VisitSerializer.Meta.fields
        if name not in VisitSerializer.JOINED and name not in VisitSerializer.ROW_KEYS
    ]
    quote = connection.ops.quote_name
    return [
        *((name, _visit_column(name)) for name in own),
        ("patient", f"i.{quote(Infusion._meta.get_field('patient').column)}"),
        ("centre", f"c.{quote(TreatmentCentre._meta.get_field('code').column)}"),
        ("assessment_codes", _visit_column("assessments")),
    ]


def _from() -> str:
    quote = connection.ops.quote_name
    return (
        f"FROM {_table(FollowUpVisit)} v"
        f" JOIN {_table(Infusion)} i ON i.{quote('id')} = v.{quote(FollowUpVisit._meta.get_field('infusion').column)}"
        f" JOIN {_table(Patient)} p ON p.{quote('id')} = i.{quote(Infusion._meta.get_field('patient').column)}"
        f" JOIN {_table(TreatmentCentre)} c ON c.{quote('id')} = p.{quote(Patient._meta.get_field('centre').column)}"
    )


class _Where:
    """Conditions joined by AND, with their parameters in order."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.params: list = []

    def add(self, sql: str, *params) -> None:
        self.terms.append(sql)
        self.params.extend(params)

    def any_of(self, column: str, values: Sequence) -> None:
        """One of ``values`` (one value compared plainly)."""
        if len(values) == 1:
            self.add(f"{column} = %s", values[0])
        else:
            self.add(f"{column} IN ({', '.join(['%s'] * len(values))})", *values)

    def one_of_choices(self, column: str, codes: Sequence[str]) -> None:
        """One of these codes of a field's choices (validated by the filter), written into the statement: the
        planner then sees ``status = 'scheduled'``, and uses the indexes kept for open visits alone in the plan
        it keeps for the statement, which it cannot where the status is a parameter."""
        if not all(code.isidentifier() for code in codes):
            raise ValueError("not a choice's code")
        literals = [f"'{code}'" for code in codes]
        self.terms.append(f"{column} = {literals[0]}" if len(codes) == 1 else f"{column} IN ({', '.join(literals)})")


@functools.cache
def _open_due() -> str:
    """The due date of an open visit, compiled from ``OPEN_DUE`` as the index of open visits' due dates holds it:
    the visit table under the statement's alias, the status written in (as a migration writes it into the index),
    since the planner matches an index expression only to the same expression."""
    query = Query(FollowUpVisit)
    expression = OPEN_DUE.resolve_expression(query).relabeled_clone({FollowUpVisit._meta.db_table: "v"})
    sql, params = expression.as_sql(query.get_compiler(connection=connection), connection)
    quote_value = connection.schema_editor().quote_value
    return sql % tuple(quote_value(param) for param in params)


def page_data(rows: list[dict], render: Callable[[list[dict]], list]) -> list:
    """The page's rows as the response carries them: those PostgreSQL wrote as they are, others ``render``ed."""
    if rows and visit_rows.JSON in rows[0]:
        return [row[visit_rows.JSON] for row in rows]
    return render(rows)


@functools.cache
def _written(order: tuple[str, ...]) -> visit_rows.Written:
    """The rows written by PostgreSQL, with their patient and the values of ``order``'s fields beside them."""
    quote = connection.ops.quote_name
    tail = [("patient", f"i.{quote(Infusion._meta.get_field('patient').column)}")]
    tail += [(name, _visit_column(name)) for name in dict.fromkeys(field.lstrip("-") for field in order)]
    return visit_rows.written(tuple(_COLUMNS), tuple(tail))


def visit_list_page(
    centre_ids: Sequence[int] | None,
    filters: dict,
    order: Sequence[str],
    after: Sequence | None,
    limit: int,
) -> list[dict]:
    """Up to ``limit`` visit rows of these centres (None: all) matching ``VisitFilter``'s cleaned ``filters``, in
    ``order`` (field names, ``-`` for descending), after the row whose ordering values are ``after``."""
    plan = _written(tuple(order)) if connection.vendor == "postgresql" and visit_rows.in_utc() else None
    statement = visit_list_statement(centre_ids, filters, order, after, limit, None if plan is None else plan.select)
    if statement is None:
        return []
    if plan is not None:
        return visit_rows.written_rows(plan, _fetch(*statement))
    keys = [key for key, _sql in _COLUMNS]
    rows = [dict(zip(keys, values, strict=True)) for values in _fetch(*statement)]
    for row in rows:
        row["results"] = stored_json(row["results"])
        row["assessment_codes"] = codes_of(row["assessment_codes"])
    return rows


def visit_list_statement(
    centre_ids: Sequence[int] | None,
    filters: dict,
    order: Sequence[str],
    after: Sequence | None,
    limit: int,
    select: str | None = None,
) -> tuple[str, list] | None:
    """The page's statement and its parameters (as ``visit_list_page`` takes them), or None where nothing can
    match; ``select``: its select list (the row columns by default)."""
    where = _Where()
    if centre_ids is not None:
        if not centre_ids:
            return None
        where.any_of(f"p.{connection.ops.quote_name(Patient._meta.get_field('centre').column)}", list(centre_ids))
    patient, infusion = filters.get("patient"), filters.get("infusion")
    if any(value is not None and not id_possible(value) for value in (patient, infusion)):
        return None  # matches nothing, as ``IdFilter`` on the ORM's path
    if filters.get("status"):
        where.one_of_choices(_visit_column("status"), filters["status"])
    # Scheduled visits alone (what an EHR polls): their due date is read, bounded and ordered as the index of open
    # visits' due dates holds it, the same value for each of them, so that a page is a range of that index.
    due = _open_due() if set(filters.get("status") or ()) == {VisitStatus.SCHEDULED} else _visit_column("due_date")
    if filters.get("kind"):
        where.one_of_choices(_visit_column("kind"), filters["kind"])
    if filters.get("due_after") is not None:
        where.add(f"{due} >= %s", filters["due_after"])
    if filters.get("due_before") is not None:
        where.add(f"{due} <= %s", filters["due_before"])
    if filters.get("centre"):
        where.add(
            f"c.{connection.ops.quote_name(TreatmentCentre._meta.get_field('code').column)} = %s", filters["centre"]
        )
    if patient is not None:
        where.add(f"i.{connection.ops.quote_name(Infusion._meta.get_field('patient').column)} = %s", int(patient))
    if infusion is not None:
        where.add(f"{_visit_column('infusion')} = %s", int(infusion))
    if filters.get("rule_code"):
        where.add(f"{_visit_column('rule_code')} = %s", filters["rule_code"])
    columns = [due if field.lstrip("-") == "due_date" else _visit_column(field.lstrip("-")) for field in order]
    descending = [field.startswith("-") for field in order]
    if after is not None:
        _add_after(where, columns, order, after)
    sql = (
        f"SELECT {select or ', '.join(sql for _key, sql in _COLUMNS)} {_FROM}"
        f"{' WHERE ' + ' AND '.join(where.terms) if where.terms else ''}"
        f" ORDER BY {', '.join(f'{c} DESC' if down else c for c, down in zip(columns, descending, strict=True))}"
        f" LIMIT {int(limit)}"  # written in: see _fetch
    )
    return sql, where.params


#: psycopg's own loader of ``timestamptz`` text, in C with psycopg's binary package. Django registers on each
#: connection a Python subclass of the Python loader that then replaces the value's zone by the connection's; for a
#: page's rows that cost about a quarter of a millisecond. The instant is the same (the serializer renders it in
#: its own zone), so the page's cursor reads times with psycopg's.
_TIMESTAMPTZ_LOADER = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, psycopg.pq.Format.TEXT)


class _PreparedCursor(PreparingCursor):
    """A cursor whose statements are bound on the server and prepared, and whose times are read by psycopg."""

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self.adapters.register_loader("timestamptz", _TIMESTAMPTZ_LOADER)


def _fetch(sql: str, params: list) -> list[tuple]:
    """The statement's rows. On PostgreSQL it is prepared, planned once per connection and shape of filters:
    planning the four-table join cost the server about as much as running it. The page's LIMIT is part of the text,
    not a parameter: with an unknown LIMIT, PostgreSQL's generic plan is costed as if it read a tenth of the
    window, dearer than a custom plan, so the server planned every execution anew (a third of a millisecond each);
    with it written in, the generic plan wins after the fifth execution and is kept. Django's cursor wrapper still runs
    it (``counted_prepared_cursor``), so it is counted and wrapped as any other query."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, [_stored_if_time(value) for value in params])
            return [tuple(map(_utc_if_naive, row)) for row in cursor.fetchall()]
    with counted_prepared_cursor(connection, _PreparedCursor) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _utc_if_naive(value):
    """SQLite hands a stored time back without its zone, which is UTC (the ORM's converters say so for its own
    reads); left naive, the serializer would take it for a time in the request's zone."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _stored_if_time(value):
    """A time compared with SQLite's stored text (a cursor's), written as the ORM stores it: UTC, no zone."""
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, dt.datetime) else value


def _add_after(where: _Where, columns: list[str], order: Sequence[str], after: Sequence) -> None:
    """The rows after ``after`` (``keyset_after``: the condition the ORM's pages write too), over ``columns``."""
    row_operator, terms = keyset_after(order)
    if row_operator is not None:
        marks = ", ".join(["%s"] * len(columns))
        where.add(f"({', '.join(columns)}) {row_operator} ({marks})", *after)
        return
    sql = ") OR (".join(" AND ".join(f"{columns[i]} {operator} %s" for i, operator in term) for term in terms)
    where.add(f"(({sql}))", *(after[i] for term in terms for i, _ in term))


_COLUMNS = _columns()
_FROM = _from()
