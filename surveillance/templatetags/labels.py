"""Template filters that name a code in the reader's language from the labels catalogue (``seeds/labels.yaml``)."""

from __future__ import annotations

from django import template
from django.utils.translation import get_language

from surveillance.care.reasons import reason_shown
from surveillance.seeds.labels import visit_label

register = template.Library()


@register.filter
def visit_name(visit) -> str:
    """A visit's name in the active language: its protocol's own label in English, the catalogue's otherwise."""
    return visit_label(visit.rule_code, visit.label, get_language())


@register.filter
def reason(text: str) -> str:
    """A stored status reason in the active language when the service wrote it; a person's words as typed."""
    return reason_shown(text)
