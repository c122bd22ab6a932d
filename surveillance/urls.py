"""Routes outside the admin and the API: the health probes, the links in patient emails and SMS, and the
messaging provider's webhooks."""

from django.urls import path

from surveillance import health, metrics
from surveillance.integrations import email_tracking, twilio_webhooks
from surveillance.reminders import views

app_name = "surveillance"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("r/<str:token>/", views.visit_link, name="visit-link"),
    path("c/<str:token>/", views.sms_link, name="sms-link"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("integrations/twilio/inbound", twilio_webhooks.inbound, name="twilio-inbound"),
    path("integrations/twilio/status", twilio_webhooks.status, name="twilio-status"),
    path("integrations/<slug:esp>/tracking/", email_tracking.email_tracking, name="email-tracking"),
]
