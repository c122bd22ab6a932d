from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SurveillanceConfig(AppConfig):
    name = "surveillance"
    verbose_name = _("Surveillance")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The task module registers with Celery; the email tracking module receives anymail's events; the API's
        # token module hears of tokens revoked or re-scoped, wherever that happens, to take back its cached copies.
        from surveillance.api import auth  # noqa: F401
        from surveillance.integrations import email_tracking, tasks  # noqa: F401
