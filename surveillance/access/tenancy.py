"""Tenancy: every patient belongs to a centre, and staff see only the centres they belong to.

Enforced in querysets (admin ``get_queryset``, API ``get_queryset``), never in templates.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from surveillance.models import CentreMembership


def user_centre_ids(user) -> list[int] | None:
    """The centres a user may see; ``None`` means every centre (superusers only)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return None
    cached = getattr(user, "_centre_ids", None)
    if cached is None:
        cached = list(CentreMembership.objects.filter(user=user).values_list("centre_id", flat=True))
        user._centre_ids = cached
    return cached


def scope(queryset: QuerySet, user, centre_path: str) -> QuerySet:
    """Restrict ``queryset`` to the user's centres through the lookup ``centre_path`` (e.g. ``patient__centre``)."""
    return scope_to_centres(queryset, user_centre_ids(user), centre_path)


def scope_to_centres(queryset: QuerySet, centre_ids: Iterable[int] | None, centre_path: str) -> QuerySet:
    """``scope`` for the centres ``user_centre_ids`` gave (``None``: every centre)."""
    if centre_ids is None:
        return queryset
    field = f"{centre_path}_id" if centre_path else "id"
    return queryset.filter(**{f"{field}__in": list(centre_ids)})
