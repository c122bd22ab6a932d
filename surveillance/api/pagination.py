"""Cursor pagination: stable pages over large, changing lists (no page drifts when rows are added)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "pk"

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:  # a bad cursor is bad input, not a missing object
            raise exceptions.ValidationError({self.cursor_query_param: ["invalid cursor"]}) from exc

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw not in (None, "") and not (raw.isdigit() and 0 < int(raw) <= self.max_page_size):
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"a whole number from 1 to {self.max_page_size}"]}
            )
        return super().get_page_size(request)

    def get_schema_operation_parameters(self, view):
        """The bounds ``get_page_size`` enforces, stated in the schema (it said any integer, and 0 was refused)."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters
