"""The admin app configuration: Django's admin with the CAR-T Watch site as the default site."""

from django.contrib.admin.apps import AdminConfig


class CartWatchAdminConfig(AdminConfig):
    default_site = "surveillance.admin.site.CartWatchAdminSite"

    def ready(self) -> None:
        super().ready()
        from django.apps import apps

        from surveillance.access import audit  # noqa: F401  (login signals)
        from surveillance.admin import registrations  # noqa: F401  (registers the ModelAdmins)
        from surveillance.admin.field_labels import field_labels_apply

        field_labels_apply(apps.get_app_config("surveillance").get_models())
