"""``GET /api/v1/``: what the API offers and how to authenticate, so that a first request never meets a bare 404."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

#: (name, route name, what it is), in the order an integration meets them.
RESOURCES = (
    ("centres", "api:centre-list", "the treatment centres this token may see"),
    ("patients", "api:patient-list", "patients of those centres"),
    ("infusions", "api:infusion-list", "CAR-T infusions; recording one plans its surveillance schedule"),
    ("visits", "api:visit-list", "planned and recorded follow-up visits"),
    ("protocols", "api:protocol-list", "surveillance protocol versions"),
    ("reminders", "api:reminder-list", "the reminder outbox and each reminder's outcome"),
    ("malignancy-events", "api:malignancy-event-list", "secondary malignancies and their reporting steps"),
    ("webhooks", "api:webhook-list", "endpoints that receive signed events"),
    ("import-fhir", "api:import-fhir", "import a FHIR R4 Bundle or Bulk Data NDJSON"),
    ("import-csv", "api:import-csv", "import a CSV export"),
    ("export-visits", "api:export-visits", "every visit as NDJSON"),
)

AUTHENTICATION = (
    "Send 'Authorization: Bearer <token>'. A token is issued to an integration by an administrator of the service "
    "(manage.py create_api_token), for one or more centres, and shown once."
)


class ApiIndexView(APIView):
    """Open to anyone: it lists routes and the way to authenticate, never data."""

    permission_classes = (AllowAny,)
    authentication_classes = ()

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(
            {
                "version": "v1",
                "authentication": AUTHENTICATION,
                "schema": request.build_absolute_uri(reverse("api:schema")),
                "docs": request.build_absolute_uri(reverse("api:docs")),
                "resources": {
                    name: {"url": request.build_absolute_uri(reverse(route)), "description": text}
                    for name, route, text in RESOURCES
                },
            }
        )
