"""URL routes: the clinician admin (also at /), the REST API and its schema, patient links and the health probe."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from surveillance import api

urlpatterns = [
    # the service's front door is the clinicians' workspace (it asks for sign-in)
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path(api.PREFIX.removeprefix("/"), include("surveillance.api.urls")),
    path("", include("surveillance.urls")),
]
