"""Twilio's webhooks: inbound SMS (STOP and START) and SMS status callbacks, each verified by Twilio's signature.

Twilio signs every request with the account's auth token over the URL it called and the POSTed fields
(``X-Twilio-Signature``, checked with the SDK's ``RequestValidator``). The URL is rebuilt from
``CARTWATCH_SITE_URL``, the address Twilio was given, so that a proxy in front does not change what is checked.
A request without a valid signature is refused with 403 and changes nothing.

Inbound: a STOP keyword (English or Spanish, as Twilio's opt-out handling knows them, or Twilio's own
``OptOutType``) clears the SMS consent of the patients with that number, START sets it again; email reminders and
the care team's escalations are not touched. Status: an SMS reported ``undelivered`` or ``failed`` after it was
accepted is recorded by ``reminders.tracking``, which falls back to the next channel.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from surveillance.access.audit import audit_record
from surveillance.care import contact_details
from surveillance.models.audit import AuditActor
from surveillance.reminders import tracking

logger = logging.getLogger("surveillance.integrations.twilio")

STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    | {"PARAR", "DETENER", "CANCELAR", "ALTO", "BAJA"}
)
START_WORDS = frozenset({"START", "UNSTOP", "SUBSCRIBE", "YES", "OPTIN", "COMENZAR", "INICIAR", "ALTA"})
#: Message statuses after which the message will not arrive; "undelivered" is the carrier's refusal (a bounce).
LOST_STATUSES = {"undelivered": True, "failed": False}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def twilio_signature_valid(request: HttpRequest) -> bool:
    """Whether Twilio signed this request with the account's auth token (never, without a token configured)."""
    token = settings.TWILIO_AUTH_TOKEN
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    url = f"{settings.SITE_URL.rstrip('/')}{request.get_full_path()}"
    return RequestValidator(token).validate(url, request.POST.dict(), signature)


def keyword_of(request: HttpRequest) -> bool | None:
    """False for an opt-out, True for an opt-in, None for anything else the patient wrote."""
    kind = request.POST.get("OptOutType", "").upper()
    if kind in ("STOP", "START"):
        return kind == "START"
    word = request.POST.get("Body", "").strip().upper().rstrip(".!")
    if word in STOP_WORDS:
        return False
    if word in START_WORDS:
        return True
    return None


@csrf_exempt  # Twilio posts without a session; its signature is the authority
@require_POST
def inbound(request: HttpRequest) -> HttpResponse:
    if not twilio_signature_valid(request):
        logger.warning("twilio inbound: signature missing or invalid; refused")
        return HttpResponseForbidden("invalid signature")
    consent = keyword_of(request)
    if consent is not None:
        try:
            phone = contact_details.phone_normalise(request.POST.get("From", ""))
        except contact_details.PhoneInvalid:
            phone = ""
        if phone:
            with transaction.atomic():
                for patient_id in contact_details.patient_sms_consent_set(phone, consent):
                    audit_record(
                        request,
                        "sms_start" if consent else "sms_stop",
                        object_type="patient",
                        object_id=patient_id,
                        patient_id=patient_id,
                        changes={"sms_consent": consent},
                        actor=AuditActor.PATIENT_SMS,
                    )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt  # as above
@require_POST
def status(request: HttpRequest) -> HttpResponse:
    if not twilio_signature_valid(request):
        logger.warning("twilio status: signature missing or invalid; refused")
        return HttpResponseForbidden("invalid signature")
    state = request.POST.get("MessageStatus", "").lower()
    if state in LOST_STATUSES:
        error = request.POST.get("ErrorCode", "")
        reason = f"sms {state}" + (f" (provider error {error})" if error.isdigit() else "")
        tracking.reminder_delivery_failed(
            request.POST.get("MessageSid", ""), bounced=LOST_STATUSES[state], reason=reason
        )
    return HttpResponse(status=204)
