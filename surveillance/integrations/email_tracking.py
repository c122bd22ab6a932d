"""Email bounces and complaints reported after the relay accepted a message, through django-anymail.

Anymail's Mailgun tracking view checks each event's signature (Mailgun's HTTP webhook signing key, and basic auth
when ``ANYMAIL_WEBHOOK_SECRET`` is set); a forged or unsigned event is refused (400, or 401 without the basic
auth) before anything reads it. It normalises the event and sends anymail's ``tracking`` signal, the library's
only way out; the receiver here is a thin shell that hands a bounce, a complaint or a rejection to
``reminders.tracking``, which matches the reminder by its Message-ID and falls back to the next channel.
"""

from __future__ import annotations

from anymail.signals import AnymailTrackingEvent, EventType, tracking
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from django.conf import settings
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from surveillance.reminders import tracking as reminder_tracking

#: Events after which the message will not reach the patient, and whether each counts as a bounce.
LOST_EVENTS = {EventType.BOUNCED: True, EventType.REJECTED: True, EventType.COMPLAINED: False}

_mailgun = MailgunTrackingWebhookView.as_view()


@csrf_exempt  # Mailgun posts without a session; its signature is the authority
def mailgun_tracking(request: HttpRequest) -> HttpResponse:
    """Mailgun's tracking webhook, served only when a signing key is configured (else it could not be verified)."""
    if not settings.ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        raise Http404("email tracking is not configured")
    return _mailgun(request)


@receiver(tracking, dispatch_uid="surveillance.email_tracking")
def email_event_record(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    bounced = LOST_EVENTS.get(event.event_type)
    if bounced is None or not event.message_id:
        return
    reason = f"email {event.event_type}" + (f" ({event.reject_reason})" if event.reject_reason else "")
    reminder_tracking.reminder_delivery_failed(event.message_id, bounced=bounced, reason=reason)
