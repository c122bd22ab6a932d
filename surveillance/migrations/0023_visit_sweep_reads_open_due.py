from django.db import migrations


class Migration(migrations.Migration):
    """The daily sweep finds the visits whose window closed among the overdue ones, through the index of open visits'
    due dates, instead of an index of its own that every planned visit was written into."""

    dependencies = [
        ("surveillance", "0022_webhook_key_one_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="followupvisit",
            name="visit_missed_sweep_idx",
        ),
    ]
