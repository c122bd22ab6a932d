"""Who may call the API and what they may do. Which rows they see is decided in each view's queryset.

Callers are integration tokens (read-only or read-write) and staff with a session. A staff member writes only what
their role lets them change in the admin (an auditor never writes); every caller needs at least one centre.
"""

from __future__ import annotations

from rest_framework import permissions

from surveillance.access.tenancy import user_centre_ids
from surveillance.api.auth import TokenPrincipal


def caller_is_token(request) -> bool:
    return isinstance(request.user, TokenPrincipal)


class CentreCaller(permissions.BasePermission):
    """An authenticated token or staff member with at least one centre; writes need a writing token or role.

    A view names the model permission a staff write needs with ``write_permission`` (default
    ``surveillance.change_<model>``); read-only tokens may only read.
    """

    message = "You may not do this with these credentials."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if isinstance(user, TokenPrincipal):
            return request.method in permissions.SAFE_METHODS or not user.token.read_only
        if not user.is_staff or user_centre_ids(user) == []:
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return user.has_perm(self.write_permission(view))

    @staticmethod
    def write_permission(view) -> str:
        explicit = getattr(view, "write_permission", None)
        if explicit:
            return explicit
        queryset = getattr(view, "queryset", None)
        model = queryset.model if queryset is not None else None
        return f"surveillance.change_{model._meta.model_name}" if model else "surveillance.__nobody__"
