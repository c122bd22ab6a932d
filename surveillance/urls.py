"""Routes outside the admin and the API: the health probes and the links in patient emails."""

from django.urls import path

from surveillance import health, metrics
from surveillance.reminders import views

app_name = "surveillance"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("r/<str:token>/", views.visit_link, name="visit-link"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
