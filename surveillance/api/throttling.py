"""Rate limiting: per token for integrations, per user for staff (rates in ``REST_FRAMEWORK``)."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from surveillance.api.auth import TokenPrincipal


class PerTokenRateThrottle(SimpleRateThrottle):
    """``token`` rate for each API token, ``staff`` rate for each session user."""

    scope = "token"

    def get_cache_key(self, request, view):
        user = request.user
        if isinstance(user, TokenPrincipal):
            self.scope = "token"
            ident = f"t{user.token.pk}"
        elif user and user.is_authenticated:
            self.scope = "staff"
            ident = f"u{user.pk}"
        else:
            self.scope = "anon"
            ident = self.get_ident(request)
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return self.cache_format % {"scope": self.scope, "ident": ident}
