"""The webhook delivery log: every event posted (or being posted) to a centre's EHR, with its status, attempts and
last error, scoped to the user's centres; ended deliveries can be sent again through the outbox
(``integrations.webhooks.webhook_redeliver``), never posted from the admin itself. No clinical role holds a
webhook permission: the page is the administrators'."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import admin, messages

from surveillance.admin.base import CentreScopedAdmin
from surveillance.integrations.webhooks import webhook_redeliver
from surveillance.models import WebhookDelivery

#: What became of a delivery, on the list and on its page.
OUTCOME = (
    "status",
    "attempts",
    "last_status_code",
    "last_error",
    "created_at",
    "next_attempt_at",
    "delivered_at",
)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(CentreScopedAdmin):
    centre_path = "endpoint__centre"
    list_display = ("id", "event", "target", *OUTCOME)
    list_filter = ("status", "event", "endpoint__centre")
    list_select_related = ("endpoint__centre",)
    fields = ("event", "target", "centre", "idempotency_key", *OUTCOME, "payload")
    readonly_fields = fields
    actions = ["redeliver"]

    @admin.display(description="Endpoint")
    def target(self, delivery: WebhookDelivery) -> str:
        """The endpoint's URL without its query string (which may carry a receiver's own credentials)."""
        parts = urlsplit(delivery.endpoint.url)
        return f"{delivery.endpoint_id}: {parts.scheme}://{parts.netloc}{parts.path}"

    @admin.display(description="Centre")
    def centre(self, delivery: WebhookDelivery) -> str:
        return delivery.endpoint.centre.code

    def has_add_permission(self, request):
        return False  # deliveries come from events

    def has_change_permission(self, request, obj=None):
        # Nothing is edited by hand; the list's action (which needs the change permission) redelivers.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Redeliver through the outbox (failed or delivered ones)", permissions=["change"])
    def redeliver(self, request, queryset) -> None:
        chosen = list(queryset.values_list("pk", flat=True))
        moved = webhook_redeliver(chosen, by=request.user)
        level = messages.SUCCESS if moved else messages.WARNING
        self.message_user(
            request,
            f"{moved} of {len(chosen)} deliveries queued again; they go out with the next delivery run. "
            "Deliveries still pending or being sent are left as they are.",
            level,
        )
