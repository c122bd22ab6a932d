"""The workspace's Spanish catalogue: every string translated, and the committed .mo compiled from the .po as it
is (Django reads only the .mo: a .po edited without recompiling would silently not apply)."""

from __future__ import annotations

import re

import polib
from django.conf import settings

CATALOGUE = settings.LOCALE_PATHS[0] / "es" / "LC_MESSAGES"
PLACEHOLDER = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdf]|%%|\{\w+\}")


def _po() -> polib.POFile:
    return polib.pofile(str(CATALOGUE / "django.po"))


def test_it_commits_the_mo_compiled_from_the_po():
    compiled = _po().to_binary()
    assert (CATALOGUE / "django.mo").read_bytes() == compiled, "run `make messages` to recompile django.mo"


def test_it_translates_every_msgid_and_none_is_fuzzy():
    po = _po()
    untranslated = [e.msgid for e in po if not e.msgstr and not (e.msgid_plural and all(e.msgstr_plural.values()))]
    assert untranslated == []
    assert [e.msgid for e in po if e.fuzzy or e.obsolete] == []
    assert po.metadata["Language"] == "es" and "nplurals=2" in po.metadata["Plural-Forms"]


def test_it_keeps_every_placeholder_in_the_translation():
    for entry in _po():
        wanted = set(PLACEHOLDER.findall(entry.msgid))
        translations = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in translations:
            assert set(PLACEHOLDER.findall(text)) == wanted, entry.msgid
