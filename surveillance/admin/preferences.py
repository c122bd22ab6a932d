"""My preferences: what a staff user sets for themselves (today, the workspace's language)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from surveillance.access.language import staff_language, staff_language_set


class PreferencesForm(forms.Form):
    language = forms.ChoiceField(
        label=_("Language"),
        choices=[("", _("Follow my browser's language")), *settings.LANGUAGES],
        required=False,
        help_text=_("The language of the workspace's pages, on every computer you sign in on."),
    )


def preferences_view(site, request):
    """Any signed-in staff user sets their own preferences; nobody else's. Saved, the page answers in the new
    language at once."""
    form = PreferencesForm(request.POST or None, initial={"language": staff_language(request.user)})
    if request.method == "POST" and form.is_valid():
        language = form.cleaned_data["language"]
        staff_language_set(request, language)
        translation.activate(language or translation.get_language_from_request(request))
        messages.success(request, gettext("Your preferences are saved."))
        return HttpResponseRedirect(reverse("admin:preferences", current_app=site.name))
    context = {**site.each_context(request), "title": _("My preferences"), "form": form}
    return TemplateResponse(request, "surveillance/admin/preferences.html", context, status=400 if form.errors else 200)
