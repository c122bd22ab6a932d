"""The API's JSON parser."""

from __future__ import annotations

from rest_framework import exceptions, parsers


class JsonParser(parsers.JSONParser):
    """DRF's JSON parser; a document nested deeper than Python's parser can follow is a parse error (400) like any
    other malformed body, where it used to escape as a RecursionError (a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from exc
