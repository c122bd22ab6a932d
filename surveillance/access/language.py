"""The language the workspace speaks to each staff user: their own choice, else their browser's.

Django's ``LocaleMiddleware`` picks the browser's language (Accept-Language) before anyone is known; once the
session's user is, ``StaffLanguageMiddleware`` replaces it with the language the user chose on the "my
preferences" page, so a clinician reads the same language on any computer of the clinic. API tokens and patients
are untouched: patient emails follow the patient's preferred language, care-team emails the centre's.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import translation

from surveillance.access.audit import audit_record
from surveillance.models import StaffPreference


def staff_language(user) -> str:
    """The language ``user`` chose, or "" to follow the browser (anonymous users, no choice saved)."""
    if not getattr(user, "is_authenticated", False):
        return ""
    cached = getattr(user, "_cartwatch_language", None)
    if cached is None:
        cached = StaffPreference.objects.filter(user=user).values_list("language", flat=True).first() or ""
        user._cartwatch_language = cached
    return cached


def staff_language_set(request, language: str) -> StaffPreference:
    """Save the signed-in user's language ("" follows the browser), audited; the one writer of the preference."""
    user = request.user
    with transaction.atomic():
        preference, _created = StaffPreference.objects.select_for_update().get_or_create(user=user)
        before = preference.language
        preference.language = language
        preference.full_clean(exclude=["user"])
        preference.save(update_fields=["language", "updated_at"])
        audit_record(
            request,
            "change",
            object_type="staff_preference",
            object_id=preference.pk,
            changes={"language": [before, language]},
        )
    user._cartwatch_language = language
    return preference


class StaffLanguageMiddleware:
    """Activates the signed-in staff user's chosen language for the request (after authentication, after
    ``LocaleMiddleware``, which has already set the browser's)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        language = staff_language(request.user)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)
