"""Pages outside the admin: the health probe, and the landing pages of the links in patient emails.

The links carry a signed token (``messages``): whoever holds the email may confirm, ask to reschedule, say the
visit was done elsewhere (each lands as a request on the coordinator's worklist) or stop routine reminders.
Pages show the centre and the date, nothing else about the patient; a forged or expired link gets a plain 400.
"""

from __future__ import annotations

import logging

from django.core import signing
from django.db import DatabaseError, transaction
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from surveillance import health as health_probes
from surveillance.access.audit import audit_record
from surveillance.imports.pull.health import pulls_health
from surveillance.models import FollowUpVisit, Patient, PatientRequest, VisitStatus
from surveillance.models.audit import AuditActor
from surveillance.models.visits import RequestKind
from surveillance.reminders import dispatch, messages, sms

logger = logging.getLogger("surveillance.health")

MESSAGE_MAX = 500

TEXT = {
    "en": {
        "title": "Your follow-up visit",
        RequestKind.CONFIRM: "Confirm that you will come to your follow-up visit at {centre} on {date}.",
        RequestKind.RESCHEDULE: "Ask {centre} for another date for your follow-up visit due on {date}.",
        RequestKind.DONE_ELSEWHERE: "Tell {centre} that you already had your follow-up visit due on {date} "
        "somewhere else.",
        "message": "Anything the centre should know (optional)",
        "submit": "Send",
        "done": "Thank you. {centre} has received your answer and will contact you if needed.",
        "changed": "This visit has changed since the email was sent. Please contact {centre}.",
        "unsubscribe": "Stop routine reminder emails from {centre}? Your care team will still be told if a "
        "visit is missed.",
        "unsubscribe_submit": "Stop reminders",
        "unsubscribed": "You will no longer receive routine reminder emails. Your care team can restart them.",
        "too_long": f"Please keep the message under {MESSAGE_MAX} characters.",
    },
    "es": {
        "title": "Su visita de seguimiento",
        RequestKind.CONFIRM: "Confirme que vendrá a su visita de seguimiento en {centre} el {date}.",
        RequestKind.RESCHEDULE: "Pida a {centre} otra fecha para su visita de seguimiento del {date}.",
        RequestKind.DONE_ELSEWHERE: "Informe a {centre} de que ya hizo en otro lugar su visita de seguimiento "
        "del {date}.",
        "message": "Algo que el centro deba saber (opcional)",
        "submit": "Enviar",
        "done": "Gracias. {centre} ha recibido su respuesta y se pondrá en contacto con usted si es necesario.",
        "changed": "Esta visita ha cambiado desde que se envió el correo. Póngase en contacto con {centre}.",
        "unsubscribe": "¿Dejar de recibir los correos de recordatorio habituales de {centre}? Su equipo médico "
        "seguirá recibiendo aviso si falta a una visita.",
        "unsubscribe_submit": "Dejar de recibir recordatorios",
        "unsubscribed": "Ya no recibirá los correos de recordatorio habituales. Su equipo médico puede reactivarlos.",
        "too_long": f"Por favor, escriba menos de {MESSAGE_MAX} caracteres.",
    },
}


def _page(request, language: str, status: int = 200, **context):
    return render(
        request, "surveillance/links/page.html", {"lang": language, "t": TEXT[language], **context}, status=status
    )


def _invalid(request):
    return render(request, "surveillance/links/invalid.html", status=400)


@never_cache
@require_http_methods(["GET", "POST"])
def visit_link(request, token: str):
    try:
        visit_id, kind = messages.visit_link_read(token)
    except signing.BadSignature:
        return _invalid(request)
    visit = FollowUpVisit.objects.select_related("infusion__patient__centre").filter(pk=visit_id).first()
    if visit is None:
        return _invalid(request)
    patient = visit.infusion.patient
    language = messages.patient_language(patient)
    t = TEXT[language]
    fmt = {"centre": patient.centre.name, "date": messages.long_date(visit.due_date, language)}
    allowed = (
        (VisitStatus.SCHEDULED, VisitStatus.MISSED) if kind == RequestKind.DONE_ELSEWHERE else (VisitStatus.SCHEDULED,)
    )
    if not patient.under_follow_up or visit.status not in allowed:
        return _page(request, language, status=409, notice=t["changed"].format(**fmt))
    prompt = t[kind].format(**fmt)
    if request.method == "GET":
        return _page(request, language, prompt=prompt, form=True, ask_message=kind != RequestKind.CONFIRM)
    text = request.POST.get("message", "").strip()
    if len(text) > MESSAGE_MAX:
        return _page(
            request,
            language,
            status=400,
            prompt=prompt,
            form=True,
            ask_message=True,
            message=text,
            errors={"message": t["too_long"]},
        )
    with transaction.atomic():
        pending = PatientRequest.objects.filter(visit=visit, kind=kind, handled_at__isnull=True).first()
        if pending is None:
            pending = PatientRequest.objects.create(visit=visit, kind=kind, message=text)
        elif text:
            PatientRequest.objects.filter(pk=pending.pk).update(message=text)
        audit_record(
            request,
            "patient_request",
            object_type="patientrequest",
            object_id=pending.pk,
            patient_id=patient.pk,
            changes={"kind": kind, "visit": visit.pk},
            actor=AuditActor.PATIENT_LINK,
        )
    return _page(request, language, notice=t["done"].format(**fmt))


@never_cache
@require_GET
def sms_link(request, token: str):
    """An SMS's short link: on to the visit's confirmation page, the one the email links to."""
    try:
        visit_id = sms.short_link_read(token, timezone.localdate())
    except signing.BadSignature:
        return _invalid(request)
    visit = FollowUpVisit.objects.filter(pk=visit_id).first()
    if visit is None:
        return _invalid(request)
    return redirect(reverse("surveillance:visit-link", args=[messages.visit_link_token(visit, RequestKind.CONFIRM)]))


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs with no session; the signed token is the authority
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    try:
        patient_id = messages.unsubscribe_read(token)
    except signing.BadSignature:
        return _invalid(request)
    patient = Patient.objects.select_related("centre").filter(pk=patient_id).first()
    if patient is None:
        return _invalid(request)
    language = messages.patient_language(patient)
    t = TEXT[language]
    fmt = {"centre": patient.centre.name}
    if request.method == "GET":
        # A GET never unsubscribes: mail scanners follow links.
        return _page(request, language, prompt=t["unsubscribe"].format(**fmt), unsubscribe_form=True)
    with transaction.atomic():
        changed = Patient.objects.filter(pk=patient.pk, reminders_opted_out_at__isnull=True).update(
            reminders_opted_out_at=timezone.now(), updated_at=timezone.now()
        )
        if changed:
            audit_record(
                request,
                "unsubscribe",
                object_type="patient",
                object_id=patient.pk,
                patient_id=patient.pk,
                actor=AuditActor.PATIENT_LINK,
            )
    return _page(request, language, notice=t["unsubscribed"])


@never_cache
@require_GET
def health(request):
    """No login, no patient data: reminder counts and whether the dispatcher keeps up (503 when it does not, and
    while the database is unreachable or not yet migrated), and whether the EHR pulls keep up.

    A failing or stale EHR pull makes the ``ehr_pull`` check (and the status) say degraded but not 503: reminders
    still go out, and the data already pulled is still followed; the answer's code stays the reminder alarm's.
    """
    try:
        ok, payload = dispatch.reminders_health(started=health_probes.PROCESS_STARTED_AT)
        payload["ehr_pull"] = pulls_health()
    except DatabaseError as exc:
        logger.warning("health: database unavailable (%s)", type(exc).__name__)
        return JsonResponse({"status": "database unavailable"}, status=503)
    if payload["ehr_pull"]["status"] != "ok":
        payload["status"] = "ehr pull degraded" if ok else f"{payload['status']}, ehr pull degraded"
    return JsonResponse(payload, status=200 if ok else 503)
