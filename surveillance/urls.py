"""Routes outside the admin and the API: the health probe and the links in patient emails."""

from django.urls import path

from surveillance.reminders import views

app_name = "surveillance"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("r/<str:token>/", views.visit_link, name="visit-link"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
