"""Email bounces and complaints reported after the relay accepted a message, through django-anymail.

Each email service provider (ESP) posts its tracking events to ``/integrations/<esp>/tracking/``, served by
anymail's tracking view for that ESP, which checks each event before anything reads it: by the ESP's signature
where it signs its events (Mailgun), and by the basic auth of ``ANYMAIL_WEBHOOK_SECRET`` (Brevo's only check). A
forged or unauthenticated event is refused (400) and changes nothing. Only the ESPs named in
``CARTWATCH_EMAIL_TRACKING`` are served, and only once their check is configured: any other URL answers 404, so
nothing accepts events it cannot verify.

Anymail normalises the event and sends its ``tracking`` signal, the library's only way out; the receiver here is a
thin shell that hands a bounce, a complaint or a rejection to ``reminders.tracking``, which matches the reminder by
the Message-ID it was sent with and falls back to the next channel. Hence the ESPs offered: those whose events name
a message by the Message-ID header the dispatcher wrote (the others name it by an id of their own, which a message
relayed over SMTP never learns).
"""

from __future__ import annotations

from dataclasses import dataclass

from anymail.signals import AnymailTrackingEvent, EventType, tracking
from django.conf import settings
from django.core import checks
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from surveillance.reminders import tracking as reminder_tracking


@dataclass(frozen=True)
class TrackingWebhook:
    """What serving one ESP's tracking webhook takes."""

    #: anymail's tracking view for the ESP.
    view: str
    #: The ``ANYMAIL`` setting holding the key that signs the ESP's events; None where basic auth
    #: (``WEBHOOK_SECRET``) is the ESP's only check, and so is required.
    signing_key: str | None = None
    #: The ESP's own event names that anymail reports as a bounce although the ESP keeps trying (a soft bounce).
    temporary: frozenset[str] = frozenset()


#: The ESPs whose events name the message by the Message-ID header it was sent with, by the name in the URL and in
#: ``CARTWATCH_EMAIL_TRACKING``.
TRACKING_WEBHOOKS = {
    "mailgun": TrackingWebhook(
        "anymail.webhooks.mailgun.MailgunTrackingWebhookView", signing_key="MAILGUN_WEBHOOK_SIGNING_KEY"
    ),
    "brevo": TrackingWebhook("anymail.webhooks.brevo.BrevoTrackingWebhookView", temporary=frozenset({"soft_bounce"})),
}

#: Events after which the message will not reach the patient, and whether each counts as a bounce.
LOST_EVENTS = {EventType.BOUNCED: True, EventType.REJECTED: True, EventType.COMPLAINED: False}


def tracking_webhook(esp: str) -> TrackingWebhook | None:
    """The ESP's webhook if it is to be served: named in ``CARTWATCH_EMAIL_TRACKING`` and its check configured."""
    webhook = TRACKING_WEBHOOKS.get(esp)
    if webhook is None or esp not in settings.CARTWATCH_EMAIL_TRACKING:
        return None
    if not settings.ANYMAIL.get(webhook.signing_key or "WEBHOOK_SECRET"):
        return None
    return webhook


@csrf_exempt  # the ESP posts without a session; its signature or basic auth is the authority
def email_tracking(request: HttpRequest, esp: str) -> HttpResponse:
    """One ESP's tracking webhook, through anymail's view for it; 404 unless it is configured and verifiable."""
    webhook = tracking_webhook(esp)
    if webhook is None:
        raise Http404("email tracking is not configured for this provider")
    return import_string(webhook.view).as_view()(request)


@receiver(tracking, dispatch_uid="surveillance.email_tracking")
def email_event_record(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    bounced = LOST_EVENTS.get(event.event_type)
    if bounced is None or not event.message_id:
        return
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    webhook = next((w for w in TRACKING_WEBHOOKS.values() if import_string(w.view).esp_name == esp_name), None)
    if webhook is not None and esp_event.get("event") in webhook.temporary:
        return  # the ESP keeps trying; a final failure comes as an event of its own
    reason = f"email {event.event_type}" + (f" ({event.reject_reason})" if event.reject_reason else "")
    message_id = f"<{event.message_id.strip().strip('<>')}>"  # some ESPs quote the header without its brackets
    reminder_tracking.reminder_delivery_failed(message_id, bounced=bounced, reason=reason)


@checks.register(checks.Tags.compatibility)
def email_tracking_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """An ESP named in ``CARTWATCH_EMAIL_TRACKING`` that is not offered, or whose check is not configured."""
    problems = []
    for esp in settings.CARTWATCH_EMAIL_TRACKING:
        webhook = TRACKING_WEBHOOKS.get(esp)
        if webhook is None:
            problems.append(
                checks.Error(
                    f"CARTWATCH_EMAIL_TRACKING names {esp!r}; tracking is offered for {', '.join(TRACKING_WEBHOOKS)}",
                    id="surveillance.E101",
                )
            )
        elif tracking_webhook(esp) is None:
            needed = f"ANYMAIL {webhook.signing_key}" if webhook.signing_key else "ANYMAIL_WEBHOOK_SECRET"
            problems.append(
                checks.Warning(f"{esp} tracking needs {needed}: its webhook answers 404", id="surveillance.W101")
            )
    return problems
