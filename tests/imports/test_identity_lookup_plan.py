"""A batch's look-up of stored patients (``patients_find``) reads the indexes of source identities and MRNs, not
the centre's whole patient table: the import would otherwise slow with every patient the registry holds. A batch
names hundreds of patients, more than the 100 values from which PostgreSQL proves a partial index's condition.
The same for the records a coordinator made aliases of a patient: their index, not every decided review."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from surveillance.imports.identity import patients_find
from surveillance.models import IdentityReview, IdentityReviewStatus, Patient
from tests.db.plans import index_plan

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner and partial indexes"),
]

SOURCE = "https://ehr-a.example.org/fhir"
BATCH = 500
#: Enough stored patients that the planner would rather read the indexes than the table, as at registry scale
#: (seeded with 5,000, then doubled by SQL five times).
SEEDED, DOUBLINGS = 5_000, 5
#: Records coordinators have decided over the years, many more than a batch names.
DECIDED = 40 * BATCH
#: The patients a day's incremental export names, and so a batch of an hourly pull.
DAILY = 12


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


def test_it_finds_a_pulls_aliases_through_the_alias_index_not_every_decided_review(centre_a, make_patient):
    stored, created = make_patient(centre_a), make_patient(centre_a)
    IdentityReview.objects.bulk_create(
        IdentityReview(
            centre=centre_a,
            patient=stored,
            source_system=SOURCE,
            source_id=f"p-{n}",
            record={},
            reason="its identifier matches a patient whose birth date differs",
            status=IdentityReviewStatus.LINKED if n % 2 else IdentityReviewStatus.CREATED,
            resolved_patient=stored if n % 2 else created,
            resolved_at=timezone.now(),
        )
        for n in range(DECIDED)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(IdentityReview._meta.db_table)}")
    keys = [(SOURCE, f"p-{n}") for n in range(0, 2 * DAILY, 2)]

    with CaptureQueriesContext(connection) as queries:
        found = patients_find(centre_a, keys, [])

    assert len(found.linked) == DAILY and set(found.linked.values()) == {created}
    (links,) = [q["sql"] for q in queries if q["sql"].startswith('SELECT "surveillance_identityreview"')]
    plan = index_plan(links)
    assert "identity_review_alias_unique" in plan, plan
    assert "Sort" not in plan  # in no order: the rows go into a dictionary
