from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SurveillanceConfig(AppConfig):
    name = "surveillance"
    verbose_name = _("Surveillance")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The task module registers with Celery; the email tracking module receives anymail's events.
        from surveillance.integrations import email_tracking, tasks  # noqa: F401
