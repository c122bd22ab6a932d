"""One error format for every answer under ``/api/``: RFC 9457 problem details.

Every error answers ``application/problem+json`` with ``{"type": "about:blank", "title": <HTTP reason>, "status":
<http status>, "detail": <sentence>, "code": <machine code>, "fields": {...}}``; ``fields`` maps a field name
(dotted for nested input, e.g. ``results.ecog``) to its messages and is present only for validation errors.
DRF's errors take that shape in ``api_exception_handler``; what never reaches it (an unknown path or a
non-numeric id, a body Django refuses, an unexpected exception) is reshaped by ``ApiProblemMiddleware``. The FHIR
endpoints answer an OperationOutcome instead. Messages never echo patient data back.
"""

from __future__ import annotations

import json
import logging
import traceback
from http import HTTPStatus

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from surveillance import api

logger = logging.getLogger("surveillance.api")


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (RFC 9457 problem details, with ``code`` and ``fields`` as extensions)."""

    type = serializers.CharField(help_text='Always "about:blank": the status and the title say what happened.')
    title = serializers.CharField(help_text="The HTTP reason phrase of the status.")
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Machine-readable: invalid, not_found, not_authenticated, throttled, ...")
    detail = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation messages per field (dotted paths for nested fields).",
    )


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object changed meanwhile; reload it and try again."
    default_code = "conflict"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = (
        "This Idempotency-Key was used with a different request (another path or body); use a new key for a new "
        "request."
    )
    default_code = "idempotency_key_reused"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The payload is too large."
    default_code = "payload_too_large"


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key in ("non_field_errors", "__all__") and not prefix else str(key)
            for sub, messages in _flatten(value, f"{prefix}.{name}" if prefix else name).items():
                out.setdefault(sub, []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for sub, messages in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    out.setdefault(sub, []).extend(messages)
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


PROBLEM_JSON = "application/problem+json"


def error_body(status_code: int, code: str, detail: str, fields: dict | None = None) -> dict:
    body = {"type": "about:blank", "title": _title(status_code), "status": status_code, "code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


def _title(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def api_exception_handler(exc, context):
    """DRF's handler, then reshaped into the one format; database refusals become 400/409, never a 500."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, IntegrityError):
        # A constraint the serializers did not foresee (a race on a unique key): the request, not the server.
        logger.info("api integrity error on %s", context["view"].__class__.__name__)
        exc = Conflict("The change conflicts with stored data (a duplicate or a concurrent change).")
    elif isinstance(exc, DataError):
        logger.info("api data error on %s", context["view"].__class__.__name__)
        exc = exceptions.ValidationError("A value is out of range or too long for its field.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        response.data = error_body(response.status_code, "invalid", "Invalid input.", fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = codes if isinstance(codes, str) else "error"
        if isinstance(detail, dict | list):
            response.data = error_body(response.status_code, code, "Invalid request.", _flatten(detail))
        else:
            response.data = error_body(response.status_code, code, str(detail))
    response.content_type = PROBLEM_JSON
    return response


def error_response(status_code: int, code: str, detail: str, fields: dict | None = None) -> Response:
    return Response(error_body(status_code, code, detail, fields), status=status_code, content_type=PROBLEM_JSON)


# --- what never reaches DRF's handler --------------------------------------------------------------------------
#: Codes and sentences for the statuses Django answers by itself under /api/.
_DJANGO_ERRORS = {
    400: ("bad_request", "The request could not be read."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "The method is not allowed on this path."),
    413: ("payload_too_large", "The payload is too large."),
    500: ("server_error", "The server failed to answer this request; it has been logged."),
}
FHIR_PATHS = (f"{api.PREFIX}v1/import/fhir",)


def problem_json_response(status_code: int) -> HttpResponse:
    """A problem-details answer for a status Django produced without DRF (the body says nothing about the input)."""
    code, detail = _DJANGO_ERRORS.get(status_code, ("error", _title(status_code) + "."))
    body = json.dumps(error_body(status_code, code, detail), separators=(",", ":"))  # as DRF renders it
    return HttpResponse(body, status=status_code, content_type=PROBLEM_JSON)


def operation_outcome_response(status_code: int) -> HttpResponse:
    """The same for the FHIR endpoints, whose clients read OperationOutcome."""
    issue_code = {404: "not-found", 413: "too-long", 500: "exception"}.get(status_code, "invalid")
    detail = _DJANGO_ERRORS.get(status_code, ("", _title(status_code) + "."))[1]
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": issue_code, "diagnostics": detail}],
    }
    return HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status_code, content_type="application/fhir+json"
    )


class ApiProblemMiddleware:
    """Under /api/, turns Django's own error pages (HTML) and unexpected exceptions into the one error format.

    An unknown path or a non-numeric id (no route matches), a body larger than Django accepts, a request Django
    finds suspicious, or an exception no handler expected would otherwise answer an HTML page.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(api.PREFIX) or response.status_code < 400:
            return response
        if "json" in response.get("Content-Type", ""):
            return response
        return self._answer(request, response.status_code)

    def process_exception(self, request, exception):
        if not request.path.startswith(api.PREFIX):
            return None
        if isinstance(exception, RequestDataTooBig):
            return self._answer(request, 413)
        if isinstance(exception, SuspiciousOperation):
            return self._answer(request, 400)
        # The traceback without the exception's message: a message may quote the input.
        logger.error(
            "api unhandled %s on %s %s\n%s",
            type(exception).__name__,
            request.method,
            request.path,
            "".join(traceback.format_tb(exception.__traceback__)),
        )
        return self._answer(request, 500)

    @staticmethod
    def _answer(request, status_code: int) -> HttpResponse:
        if request.path.startswith(FHIR_PATHS):
            return operation_outcome_response(status_code)
        return problem_json_response(status_code)
