from django.db import migrations, models


class Migration(migrations.Migration):
    """One index of open visits' due dates, ending with the id, instead of two: the expression the worklists and the
    sweep read (with its statistics) and the partial (due date, id) the API's pages of scheduled visits read."""

    dependencies = [
        ("surveillance", "0023_visit_sweep_reads_open_due"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="followupvisit",
            name="visit_open_due_order_idx",
        ),
        migrations.RemoveIndex(
            model_name="followupvisit",
            name="visit_open_due_idx",
        ),
        migrations.AddIndex(
            model_name="followupvisit",
            index=models.Index(
                models.Case(models.When(status="scheduled", then=models.F("due_date"))),
                models.F("id"),
                name="visit_open_due_idx",
            ),
        ),
    ]
