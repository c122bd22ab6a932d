from django.db import migrations, models


class Migration(migrations.Migration):
    """The webhook delivery's idempotency key keeps one unique index, without the LIKE-pattern twin unique=True adds."""

    dependencies = [
        ("surveillance", "0021_visit_status_due_index_dropped"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="webhookdelivery",
            constraint=models.UniqueConstraint(fields=("idempotency_key",), name="webhook_idempotency_key_unique"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="idempotency_key",
            field=models.CharField(max_length=128),
        ),
    ]
