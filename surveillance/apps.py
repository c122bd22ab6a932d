from django.apps import AppConfig


class SurveillanceConfig(AppConfig):
    name = "surveillance"
    verbose_name = "Surveillance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The task module registers with Celery.
        from surveillance.integrations import tasks  # noqa: F401
