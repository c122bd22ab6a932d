from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SurveillanceConfig(AppConfig):
    name = "surveillance"
    verbose_name = _("Surveillance")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The task module registers with Celery.
        from surveillance.integrations import tasks  # noqa: F401
