"""A batch's look-up of stored patients (``patients_find``) reads the indexes of source identities and MRNs, not
the centre's whole patient table: the import would otherwise slow with every patient the registry holds. A batch
names hundreds of patients, more than the 100 values from which PostgreSQL proves a partial index's condition."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from surveillance.imports.identity import patients_find
from surveillance.models import Patient

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner and partial indexes"),
]

SOURCE = "https://ehr-a.example.org/fhir"
BATCH = 500
#: Enough stored patients that the planner would rather read the indexes than the table, as at registry scale
#: (seeded with 5,000, then doubled by SQL five times).
SEEDED, DOUBLINGS = 5_000, 5


@pytest.fixture
def registry(centre_a) -> None:
    Patient.objects.bulk_create(
        Patient(
            centre=centre_a,
            mrn=f"MRN{n:06d}",
            given_name="Alex",
            family_name=f"Rivera{n}",
            birth_date=dt.date(1970, 5, 17),
            source_system=SOURCE,
            source_id=f"p-{n}",
        )
        for n in range(SEEDED)
    )
    quote = connection.ops.quote_name
    columns = [f.column for f in Patient._meta.concrete_fields if not f.primary_key]
    renamed = {"mrn", "source_id"}  # each copy's own, as the unique keys ask
    with connection.cursor() as cursor:
        for doubling in range(1, DOUBLINGS + 1):
            values = [f"{quote(c)} || '-{doubling}'" if c in renamed else quote(c) for c in columns]
            cursor.execute(
                f"INSERT INTO {quote(Patient._meta.db_table)} ({', '.join(map(quote, columns))}) "
                f"SELECT {', '.join(values)} FROM {quote(Patient._meta.db_table)}"
            )
        cursor.execute(f"ANALYZE {quote(Patient._meta.db_table)}")


def test_it_finds_a_batch_of_patients_through_the_indexes(centre_a, registry):
    keys = [(SOURCE, f"p-{n}") for n in range(0, 2 * BATCH, 2)]
    mrns = [f"MRN{n:06d}" for n in range(1, 2 * BATCH, 2)]

    with CaptureQueriesContext(connection) as queries:
        found = patients_find(centre_a, keys, mrns)

    assert len(found.by_source) == len(found.by_mrn) == BATCH
    patients = [q["sql"] for q in queries if q["sql"].startswith('SELECT "surveillance_patient"')]
    assert len(patients) == 1
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {patients[0]}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "patient_source_identity_unique" in plan and "patient_mrn_unique_per_centre" in plan, plan[:400]
    assert "Sort" not in plan  # in no order: the rows go into dictionaries
