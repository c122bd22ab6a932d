"""OpenAPI generation: every operation documents the error responses it can give, in the one error format."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter

from surveillance.api.exceptions import PROBLEM_JSON, ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `fields` names each bad field and says why.",
    "401": "No credentials, or an unknown or revoked token.",
    "403": "The credentials may not do this (a read-only token writing, a role without the permission).",
    "404": "No such object among the caller's centres.",
    "405": "The method is not allowed on this path.",
    "409": "The object changed meanwhile (e.g. the visit is no longer scheduled), or a request with the same "
    "`Idempotency-Key` is still being handled: reload and retry.",
    "413": "The payload is larger than the import limit.",
    "415": "The content type is not accepted here.",
    "422": "The `Idempotency-Key` was used before with a different request.",
    "429": "Rate limit of the token (or user) exceeded; retry after the `Retry-After` seconds.",
}

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string up to 255 characters (a UUID). A retry with the same key and the same request gets the "
        "first answer back (header `Idempotent-Replayed: true`) and writes nothing; the same key with another "
        "request is refused with 422. Kept per token for `CARTWATCH_IDEMPOTENCY_KEY_HOURS` (default 24)."
    ),
)


class ApiAutoSchema(AutoSchema):
    #: Error codes a view adds to the common ones (e.g. ``("409",)`` on state transitions).
    def _error_codes(self) -> list[str]:
        codes = ["401", "403", "429"]
        has_path_params = "{" in self.path
        if has_path_params:
            codes.append("404")
        if self.method in ("POST", "PUT", "PATCH") or self._is_list_view() or self.method == "GET":
            codes.append("400")
        if self.method == "POST":
            codes.extend(["409", "422"])
        codes.extend(code for code in getattr(self.view, "extra_error_codes", ()) if code not in codes)
        return codes

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        if self.method == "POST":
            parameters = [*parameters, IDEMPOTENCY_KEY]
        return parameters

    def _get_request_body(self, direction="request"):
        """A view that reads its body itself (``request_body_required``) needs one: without it the answer is 415."""
        body = super()._get_request_body(direction)
        if body is not None and getattr(self.view, "request_body_required", False):
            body["required"] = True
        return body

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code in responses:
                continue
            body = self._get_response_for_code(ErrorSerializer, code, [PROBLEM_JSON], direction)
            body["description"] = ERROR_DESCRIPTIONS.get(code, body.get("description", ""))
            responses[code] = body
        return responses
