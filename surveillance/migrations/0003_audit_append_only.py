"""The audit table refuses UPDATE and DELETE in the database itself (PostgreSQL).

The model and its queryset refuse changes in Python; a row-level trigger makes raw SQL, other clients and a
compromised application account refuse too. TRUNCATE is not blocked: it is not a row change, the test framework
flushes every table with it between transactional tests, and it needs the table owner's rights anyway.
On SQLite nothing is installed (the embedded default keeps the model's guards).
"""

from django.db import migrations

FUNCTION = "surveillance_auditentry_refuse_change"
TRIGGER = "surveillance_auditentry_append_only"

# One statement each, with no parameters: the function body's % are RAISE placeholders, not Python's.
INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit entries are append-only: % refused on %', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END;
    $$
    """,
    f"DROP TRIGGER IF EXISTS {TRIGGER} ON surveillance_auditentry",
    f"""
    CREATE TRIGGER {TRIGGER}
        BEFORE UPDATE OR DELETE ON surveillance_auditentry
        FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()
    """,
]

REMOVE = [
    f"DROP TRIGGER IF EXISTS {TRIGGER} ON surveillance_auditentry",
    f"DROP FUNCTION IF EXISTS {FUNCTION}()",
]


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in INSTALL:
            schema_editor.execute(statement, params=None)


def remove(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in REMOVE:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("surveillance", "0002_reminders")]

    operations = [migrations.RunPython(install, remove, elidable=False)]
