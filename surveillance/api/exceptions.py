"""One error format for the whole API.

Every error answers ``{"status": <http status>, "code": <machine code>, "detail": <sentence>, "fields": {...}}``;
``fields`` maps a field name (dotted for nested input, e.g. ``results.ecog``) to its messages and is present only
for validation errors. Messages never echo patient data back.
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger("surveillance.api")


class ErrorSerializer(serializers.Serializer):
    """The body of every error response."""

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


def error_body(status_code: int, code: str, detail: str, fields: dict | None = None) -> dict:
    body = {"status": status_code, "code": code, "detail": detail}
    if fields:
        body["fields"] = fields
    return body


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
    return response


def error_response(status_code: int, code: str, detail: str, fields: dict | None = None) -> Response:
    return Response(error_body(status_code, code, detail, fields), status=status_code)
