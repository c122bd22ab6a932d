"""New rows written by COPY (PostgreSQL) are the rows ``bulk_create`` writes from the same values."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from surveillance.care import planning
from surveillance.db import bulk_rows
from surveillance.models import AuditEntry, FollowUpVisit, Reminder

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 2, 1, 15, 0, tzinfo=dt.UTC)
VARYING = {"id", "infusion_id", "visit_id", "created_at", "updated_at", "at", "object_id", "patient_id"}


def _stored(infusion) -> dict:
    """Every column of the infusion's visits, reminders and audit entries, but ids and insert stamps (which differ
    anyway)."""
    visits = FollowUpVisit.objects.filter(infusion=infusion).order_by("rule_code", "occurrence").values()
    reminders = Reminder.objects.filter(visit__infusion=infusion).order_by("idempotency_key")
    audit = AuditEntry.objects.filter(object_type="infusion", object_id=str(infusion.pk)).values()
    return {
        "visits": [{k: v for k, v in row.items() if k not in VARYING} for row in visits],
        "audit": [{k: v for k, v in row.items() if k not in VARYING} for row in audit],
        "reminders": [
            {
                **{k: v for k, v in row.items() if k not in VARYING | {"idempotency_key"}},
                "key": row["idempotency_key"].split(":", 1)[1],
            }
            for row in reminders.values()
        ],
    }


@pytest.fixture
def needs_copy():
    if connection.vendor != bulk_rows.COPY_VENDOR:
        pytest.skip("COPY is PostgreSQL's")


@pytest.mark.parametrize("infusion_date", [dt.date(2026, 1, 20), dt.date(2019, 3, 4)])
def test_it_writes_the_rows_bulk_create_writes(
    needs_copy, centre_a, make_patient, make_infusion, monkeypatch, infusion_date
):
    copied = make_infusion(make_patient(centre_a), infusion_date=infusion_date)
    created = make_infusion(make_patient(centre_a), infusion_date=infusion_date)
    planning.infusions_plan_new([copied], now=NOW)
    monkeypatch.setattr(bulk_rows, "COPY_VENDOR", "none")
    planning.infusions_plan_new([created], now=NOW)

    assert _stored(copied) == _stored(created)
    rows = _stored(copied)
    assert len(rows["visits"]) > 20
    assert rows["reminders"] and len(rows["audit"]) == 1
    assert {v["status"] for v in rows["visits"]} == {"scheduled", "unrecorded"}


COLUMNS = ("infusion_id", "rule_id", "rule_code", "occurrence", "label", "kind", "due_date", "window_start")
COLUMNS += ("window_end", "assessments")


def _row(infusion, rule, occurrence: int, day: dt.date) -> tuple:
    return (infusion.pk, rule.pk, rule.code, occurrence, "x", "clinic", day, day, day, ("cbc", "exam"))


def test_it_returns_the_ids_of_the_rows_it_numbered(needs_copy, centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a))
    rule = planning.Protocol.objects.current("standard").rules.first()
    day = dt.date(2026, 3, 1)
    bulk_rows.rows_insert(FollowUpVisit, COLUMNS, [_row(infusion, rule, 3, day)])

    rows = [_row(infusion, rule, n, day) for n in (1, 2)]
    before = timezone.now()
    ids = bulk_rows.rows_insert_numbered(FollowUpVisit, COLUMNS, rows)

    stored = {v.pk: v for v in FollowUpVisit.objects.filter(pk__in=ids)}
    assert [stored[pk].occurrence for pk in ids] == [1, 2]
    first = stored[ids[0]]
    assert first.assessments == ["cbc", "exam"] and first.results == {} and first.status == "scheduled"
    assert before <= first.created_at == first.updated_at <= timezone.now()  # stamped when stored, as an INSERT
    assert FollowUpVisit.objects.filter(infusion=infusion).exclude(pk__in=ids).get().occurrence == 3


#: Text COPY must escape, text in any script, and a moment in a zone other than the server's.
AWKWARD = ["tab\there", "line\nbreak\r\n", "back\\slash \\N", "ünïcødé €", "\b\v\f", "plain"]
CHANGED_AT = dt.datetime(2026, 1, 1, 5, 6, 7, 123, tzinfo=zoneinfo.ZoneInfo("America/New_York"))


def test_it_writes_any_text_and_moment_as_an_insert_would(
    needs_copy, centre_a, make_patient, make_infusion, monkeypatch
):
    infusion = make_infusion(make_patient(centre_a))
    rule = planning.Protocol.objects.current("standard").rules.first()
    day = dt.date(2026, 3, 1)
    columns = (*COLUMNS, "status", "status_reason", "status_changed_at")

    def rows(first: int) -> list[tuple]:
        return [
            (infusion.pk, rule.pk, rule.code, first + n, text, "clinic", day, day, day, ("cbc",), "cancelled", text, at)
            for n, (text, at) in enumerate(zip(AWKWARD, [CHANGED_AT, None] * 3, strict=True))
        ]

    bulk_rows.rows_insert(FollowUpVisit, columns, rows(1))
    monkeypatch.setattr(bulk_rows, "COPY_VENDOR", "none")
    bulk_rows.rows_insert(FollowUpVisit, columns, rows(101))

    stored = FollowUpVisit.objects.filter(infusion=infusion).order_by("occurrence")
    copied = list(stored.filter(occurrence__lt=100).values(*columns[4:]))
    created = list(stored.filter(occurrence__gt=100).values(*columns[4:]))
    assert copied == created
    assert [row["label"] for row in created] == AWKWARD and created[0]["status_changed_at"] == CHANGED_AT


def test_it_refuses_text_postgresql_cannot_hold_as_an_insert_would(needs_copy, centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a))
    rule = planning.Protocol.objects.current("standard").rules.first()
    row = _row(infusion, rule, 1, dt.date(2026, 3, 1))

    with pytest.raises(DataError), transaction.atomic():
        bulk_rows.rows_insert(FollowUpVisit, COLUMNS, [(*row[:4], "a\x00b", *row[5:])])
    assert not FollowUpVisit.objects.filter(infusion=infusion).exists()


def test_it_refuses_a_duplicate_as_an_insert_would(needs_copy, centre_a, make_patient, make_infusion):
    infusion = make_infusion(make_patient(centre_a))
    rule = planning.Protocol.objects.current("standard").rules.first()
    day = dt.date(2026, 3, 1)
    bulk_rows.rows_insert(FollowUpVisit, COLUMNS, [_row(infusion, rule, 1, day)])

    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_rows.rows_insert(FollowUpVisit, COLUMNS, [_row(infusion, rule, 1, day)])
    assert FollowUpVisit.objects.filter(infusion=infusion).count() == 1


def test_it_refuses_to_copy_a_default_that_may_differ_from_row_to_row(
    needs_copy, centre_a, make_patient, make_infusion, monkeypatch
):
    infusion = make_infusion(make_patient(centre_a))
    rule = planning.Protocol.objects.current("standard").rules.first()
    monkeypatch.setattr(FollowUpVisit._meta.get_field("results"), "default", lambda: {"drawn": "per row"})

    with pytest.raises(ValueError, match="results"):
        bulk_rows.rows_insert(FollowUpVisit, COLUMNS, [_row(infusion, rule, 1, dt.date(2026, 3, 1))])
