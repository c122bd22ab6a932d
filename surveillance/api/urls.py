"""Routes of the REST API: v1 under /api/v1/, the OpenAPI schema at /api/schema/, interactive docs at /api/docs/."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from surveillance.api import views
from surveillance.api.index import ApiIndexView

router = SimpleRouter(trailing_slash=False)
router.register("centres", views.CentreViewSet, basename="centre")
router.register("patients", views.PatientViewSet, basename="patient")
router.register("infusions", views.InfusionViewSet, basename="infusion")
router.register("visits", views.VisitViewSet, basename="visit")
router.register("protocols", views.ProtocolViewSet, basename="protocol")
router.register("reminders", views.ReminderViewSet, basename="reminder")
router.register("malignancy-events", views.MalignancyEventViewSet, basename="malignancy-event")
router.register("webhooks", views.WebhookEndpointViewSet, basename="webhook")

v1 = [
    path("", ApiIndexView.as_view(), name="index"),
    *router.urls,
    path("import/fhir", views.FhirImportView.as_view(), name="import-fhir"),
    path("import/csv", views.CsvImportView.as_view(), name="import-csv"),
    re_path(r"^import/jobs/(?P<pk>[0-9]+)$", views.ImportJobView.as_view(), name="import-job"),
    path("export/visits.ndjson", views.VisitsExportView.as_view(), name="export-visits"),
]

app_name = "api"
urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
