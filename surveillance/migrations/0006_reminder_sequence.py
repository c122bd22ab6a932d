"""A reminder stores the visit sequence it was planned for, instead of it being parsed back out of its key.

Existing rows take it from their idempotency key, ``<infusion>:<rule code>:<occurrence>:s<sequence>:<audience>:
<purpose>:<days before>``: the fourth part from the end, whatever a rule code holds. The column is added with 0
for the rows already there (no default is kept) and filled before the migration commits.
"""

from django.db import migrations, models

BATCH = 2000


def sequence_of(key: str) -> int:
    """The sequence in a reminder key (0 for a key not of the outbox's form, which the outbox never wrote)."""
    parts = key.rsplit(":", 4)
    part = parts[1] if len(parts) == 5 else ""
    return int(part[1:]) if part[:1] == "s" and part[1:].isdigit() else 0


def sequences_fill(apps, schema_editor) -> None:
    Reminder = apps.get_model("surveillance", "Reminder")
    batch = []
    for reminder in Reminder.objects.only("pk", "idempotency_key").iterator(chunk_size=BATCH):
        reminder.sequence = sequence_of(reminder.idempotency_key)
        if reminder.sequence:
            batch.append(reminder)
        if len(batch) >= BATCH:
            Reminder.objects.bulk_update(batch, ["sequence"])
            batch = []
    Reminder.objects.bulk_update(batch, ["sequence"])


class Migration(migrations.Migration):
    dependencies = [
        ("surveillance", "0005_centre_details"),
    ]

    operations = [
        migrations.AddField(
            model_name="reminder",
            name="sequence",
            field=models.PositiveIntegerField(
                default=0,
                help_text="The visit's iCalendar sequence this row was planned for (a moved visit's rows are stale).",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(sequences_fill, migrations.RunPython.noop),
    ]
