from django.apps import AppConfig


class SurveillanceConfig(AppConfig):
    name = "surveillance"
    verbose_name = "Surveillance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Webhook events are planned from audit rows (a signal receiver); the task module registers with Celery.
        from surveillance.integrations import tasks, webhooks  # noqa: F401
