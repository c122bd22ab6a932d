"""URL routes: the clinician admin, the REST API and its schema, patient links and the health probe."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("surveillance.api.urls")),
    path("", include("surveillance.urls")),
]
