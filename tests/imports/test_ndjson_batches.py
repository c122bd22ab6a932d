"""NDJSON batches are applied without a savepoint per line; a line the database refuses is still reported by its
number, and the other lines of its batch are kept."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.imports import batching, ehr_import
from surveillance.models import AuditEntry, FollowUpVisit, Infusion, Patient, Reminder
from tests.imports.conftest import car_t_procedure, mrn_patient

pytestmark = pytest.mark.django_db


def patient_line(source_id: str, mrn: str) -> str:
    return json.dumps(mrn_patient(source_id, mrn))


def infusion_line(source_id: str, patient_id: str, days_ago: int = 40) -> str:
    return json.dumps(car_t_procedure(source_id, patient_id, dt.date.today() - dt.timedelta(days=days_ago)))


def test_it_reports_a_line_the_database_refuses_by_number_and_keeps_the_rest_of_its_batch(centre_a):
    ehr_import.ndjson_import([patient_line("a", "X1"), patient_line("b", "Y1")], centre_a)
    lines = [
        patient_line("c", "Z1"),
        patient_line("b", "X1"),  # b takes a's MRN: the database refuses the duplicate
        patient_line("d", "W1"),
        infusion_line("ic", "c"),
        infusion_line("id", "d", days_ago=400),
    ]

    report = ehr_import.ndjson_import(lines, centre_a)

    assert [(e.line, e.code) for e in report.errors] == [(2, "conflict")]
    assert (report.patients_created, report.patients_updated, report.infusions_created) == (2, 0, 2)
    assert Patient.objects.get(centre=centre_a, source_id="b").mrn == "Y1"
    assert set(Patient.objects.filter(centre=centre_a).values_list("source_id", flat=True)) == {"a", "b", "c", "d"}
    assert report.visits_planned == FollowUpVisit.objects.count() > 40
    assert Reminder.objects.exists() and AuditEntry.objects.filter(action="plan").count() == 2
    assert report.patient_ids == set(Patient.objects.exclude(source_id__in=["a", "b"]).values_list("pk", flat=True))


def test_it_writes_a_batch_without_a_savepoint_per_line(centre_a):
    lines = [patient_line(f"p{i}", f"M{i}") for i in range(20)]
    lines += [infusion_line(f"i{i}", f"p{i}") for i in range(20)]

    with CaptureQueriesContext(connection) as queries:
        report = ehr_import.ndjson_import(lines, centre_a)

    assert report.error_count == 0 and report.infusions_created == 20
    savepoints = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "surveillance_patient"')]
    assert len(savepoints) < 5 and len(inserts) == 1


def test_it_finds_a_patient_twice_in_one_batch_as_the_same_patient(centre_a):
    lines = [patient_line("p", "M1"), patient_line("p", "M2"), patient_line("q", "M2"), infusion_line("i", "q")]

    report = ehr_import.ndjson_import(lines, centre_a)

    assert (report.patients_created, report.patients_updated, report.error_count) == (1, 2, 0)
    patient = Patient.objects.get(centre=centre_a)
    assert (patient.source_id, patient.mrn, patient.infusions.count()) == ("q", "M2", 1)


def test_it_imports_as_the_line_by_line_path_does(centre_a, centre_b, monkeypatch):
    lines = [patient_line(f"p{i}", f"M{i}") for i in range(6)] + [patient_line("p1", "M1"), "{broken"]
    lines += [infusion_line(f"i{i}", f"p{i}", days_ago=30 + 200 * i) for i in range(6)]
    lines += [infusion_line("i0", "p0"), infusion_line("x", "nobody")]

    fast = ehr_import.ndjson_import(lines, centre_a, batch_lines=5)
    apply = batching.batch_apply
    monkeypatch.setattr(batching, "batch_apply", lambda ctx, batch, careful: apply(ctx, batch, careful=True))
    careful = ehr_import.ndjson_import(lines, centre_b, batch_lines=5)

    def stored(centre) -> list:
        return sorted(
            (i.patient.source_id, i.patient.mrn, i.source_id, i.infusion_date, i.visits.count())
            for i in Infusion.objects.filter(patient__centre=centre)
        )

    mine, theirs = fast.as_dict(), careful.as_dict()
    assert mine == theirs and mine["error_count"] == 2
    assert stored(centre_a) == stored(centre_b)
    assert len(fast.patient_ids) == len(careful.patient_ids) == 6


@pytest.mark.parametrize("nul", ["\\u0000", "\x00"], ids=["escaped", "raw"])
def test_it_reports_a_nul_byte_for_its_line_only(centre_a, nul):
    bad = patient_line("b", "Y1").replace('"Doe"', f'"Do{nul}e"')
    report = ehr_import.ndjson_import([patient_line("a", "X1"), bad, patient_line("c", "Z1")], centre_a)
    assert [issue.line for issue in report.errors] == [2]
    assert sorted(Patient.objects.values_list("mrn", flat=True)) == ["X1", "Z1"]
