"""A staff user's own settings for the workspace."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

LANGUAGE_CODES = [code for code, _name in settings.LANGUAGES]


class StaffPreference(models.Model):
    """What a staff user chose for themselves: today, the language the workspace speaks to them in.

    A row exists only once the user saved the "my preferences" page; without one (or with a blank language) the
    workspace follows the browser's Accept-Language.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_preference")
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=settings.LANGUAGES,
        blank=True,
        help_text=_("The language of the workspace. Leave it empty to follow your browser's language."),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("staff preference")
        verbose_name_plural = _("staff preferences")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(language="") | models.Q(language__in=LANGUAGE_CODES),
                name="staff_preference_language_known",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.language or 'browser'})"
