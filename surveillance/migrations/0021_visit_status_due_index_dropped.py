from django.db import migrations


class Migration(migrations.Migration):
    """The (status, due date) index goes: open visits by due date read their own partial index, the rest the
    export's; each index keyed on a date costs every new visit a write at a random place in it."""

    dependencies = [
        ("surveillance", "0020_reminder_key_one_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="followupvisit",
            name="visit_worklist_due_idx",
        ),
    ]
