"""The shorter middleware chain of API requests that carry a token.

An integration's request (``Authorization: Bearer <key>`` to ``/api/``) is authenticated by its token alone
(``ApiTokenAuthentication`` answers 401 for a bad key, it never falls back to a session), so the browser's
middleware has nothing to do for it: no session to load, no CSRF token, no second factor, no messages, no page
policy to build. Skipping them takes about a sixth of the CPU of a visit-list page. The chain it takes instead is
``settings.API_TOKEN_MIDDLEWARE``; every other request, the API's session callers included, takes
``settings.MIDDLEWARE`` as before.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from surveillance import api
from surveillance.api.auth import ApiTokenAuthentication

#: The Authorization schemes ``ApiTokenAuthentication`` accepts, lower-cased, with their separating space.
TOKEN_SCHEMES = tuple(f"{keyword} " for keyword in ApiTokenAuthentication.keywords)
#: What an API answer may load or be framed by: nothing (it is data, never a page).
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def carries_api_token(environ: dict) -> bool:
    """Whether a request is an API call authenticated by a token (from its WSGI environ, before any parsing)."""
    if not environ.get("PATH_INFO", "").startswith(api.PREFIX):
        return False
    return environ.get("HTTP_AUTHORIZATION", "").lower().startswith(TOKEN_SCHEMES)


class TokenChainMixin:
    """A Django handler whose middleware chain is ``settings.API_TOKEN_MIDDLEWARE``.

    ``BaseHandler.load_middleware`` reads ``settings.MIDDLEWARE`` itself, so the list is swapped in while it
    builds the chain; that happens once, when the handler is created at process start (or, for the test client,
    at its first request), before any request is served.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_TOKEN_MIDDLEWARE
        try:
            super().load_middleware(is_async)  # type: ignore[misc]
        finally:
            settings.MIDDLEWARE = full


class TokenChainWSGIHandler(TokenChainMixin, WSGIHandler):
    """Serves the requests ``carries_api_token`` picks out."""


class RoutingWSGIHandler(WSGIHandler):
    """The web role's WSGI application: token requests to the API take the short chain, all others the full one."""

    def __init__(self) -> None:
        super().__init__()
        self.token_handler = TokenChainWSGIHandler()

    def __call__(self, environ, start_response):
        if carries_api_token(environ):
            return self.token_handler(environ, start_response)
        return super().__call__(environ, start_response)


class ApiContentSecurityPolicyMiddleware:
    """The fixed policy of a token request's answer, in place of the pages' policy (built per response)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
        return response
