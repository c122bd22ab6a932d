"""The labels catalogue (``seeds/labels.yaml``): what people read in place of assessment, analyte, visit-kind,
outcome and visit (rule) codes, statuses and patient requests, in English and Spanish.

Codes are what the protocols, the results and the API exchange; a coordinator, a patient or a spreadsheet should
never have to read ``igg_ivig_decision``. ``label`` is the one function every place that shows a code calls (the
admin, the API's ``assessments_display``, the exports); the loader (``seeds.loader.seeds_load``) refuses a
catalogue that leaves a protocol's assessment without a label in any language, so a gap shows at deploy time,
not on a page. The statuses and the patient requests are the labels of the models' choices (``choice_label``),
so that every place that shows one (a list, its filter, a page, an email, an export) reads the same catalogue.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils.functional import lazy
from django.utils.translation import get_language

from surveillance.seeds.files import yaml_read

FILE_NAME = "labels.yaml"
SECTIONS = ("assessments", "analytes", "visit_kinds", "outcomes", "visits", "statuses", "requests")
DEFAULT_LANGUAGE = "en"


class LabelsError(ValueError):
    """The catalogue file is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    languages: tuple[str, ...]
    #: section -> code -> language -> label
    sections: Mapping[str, Mapping[str, Mapping[str, str]]]
    #: language -> code -> label, every section in one mapping: what ``label`` reads (a page of a list looks up
    #: hundreds of labels, and a search section by section cost more than the rest of rendering them)
    by_language: Mapping[str, Mapping[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {
            language: {code: labels[language] for entries in self.sections.values() for code, labels in entries.items()}
            for language in self.languages
        }
        object.__setattr__(self, "by_language", index)

    def find(self, code: str) -> Mapping[str, str] | None:
        for section in SECTIONS:
            found = self.sections[section].get(code)
            if found is not None:
                return found
        return None

    def missing(self, section: str, codes: Iterable[str]) -> list[str]:
        """``code (language)`` for every code of ``section`` without a label in one of the catalogue's languages."""
        entries = self.sections[section]
        return [
            f"{code} ({language})"
            for code in sorted(set(codes))
            for language in self.languages
            if not (entries.get(code) or {}).get(language)
        ]


def catalogue_from_dict(data: object) -> Catalogue:
    """Parse and check the file's content: a label per declared language, and a code in one section only (so that
    ``label`` needs no section to find it)."""
    if not isinstance(data, dict):
        raise LabelsError("expected a mapping at the top level")
    languages = data.get("languages")
    if not isinstance(languages, list) or not languages or not all(isinstance(x, str) for x in languages):
        raise LabelsError("languages: expected a list of language codes")
    if DEFAULT_LANGUAGE not in languages:
        raise LabelsError(f"languages: {DEFAULT_LANGUAGE} is the fallback and must be listed")
    sections: dict[str, dict[str, dict[str, str]]] = {}
    seen: dict[str, str] = {}
    for section in SECTIONS:
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise LabelsError(f"{section}: expected a mapping of code to labels")
        parsed: dict[str, dict[str, str]] = {}
        for code, labels in entries.items():
            where = f"{section}.{code}"
            if code in seen:
                raise LabelsError(f"{where}: the code is also in {seen[code]}")
            seen[code] = section
            if not isinstance(labels, dict) or set(labels) != set(languages):
                raise LabelsError(f"{where}: expected a label in each of {', '.join(languages)}")
            if not all(isinstance(text, str) and text.strip() for text in labels.values()):
                raise LabelsError(f"{where}: a label must be non-empty text")
            parsed[str(code)] = {language: labels[language].strip() for language in languages}
        sections[section] = parsed
    return Catalogue(tuple(languages), sections)


def catalogue_read(seeds_dir: Path) -> Catalogue:
    return catalogue_from_dict(yaml_read(seeds_dir / FILE_NAME, LabelsError))


@functools.cache
def _catalogue(seeds_dir: str | Path) -> Catalogue:
    return catalogue_read(Path(seeds_dir))


def catalogue() -> Catalogue:
    """The catalogue of the configured seeds folder, read once per process (it is data shipped with a release).

    Keyed by the setting's own value: a list page looks up hundreds of labels, and building and hashing a new
    ``Path`` for each cost a tenth of an API request's time.
    """
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])


def label(code: str, language: str = DEFAULT_LANGUAGE) -> str:
    """The human label of an assessment, analyte, visit-kind, outcome, status or request code in ``language``
    (English when the catalogue has no such language); a code the catalogue does not know is shown as it is rather
    than hidden."""
    return labels_in(language).get(code, code)


def labels_in(language: str = DEFAULT_LANGUAGE) -> Mapping[str, str]:
    """Every code's label in ``language`` (English when the catalogue has no such language), for a caller that
    looks up many: ``label`` is ``labels_in(language).get(code, code)``."""
    index = catalogue().by_language
    return index.get(_language(language)) or index[DEFAULT_LANGUAGE]


def _language(language: str | None) -> str:
    """``es-ar`` -> ``es``: the catalogue is written per language, not per region."""
    return (language or DEFAULT_LANGUAGE).split("-")[0]


#: The codes the models' choices take their labels from (``choice_label``), gathered as the model modules define
#: them: what the loader and the tests check the catalogue against.
CHOICE_CODES: set[str] = set()


def _choice_text(code: str) -> str:
    return label(code, _language(get_language()))


_choice_text_lazy = lazy(_choice_text, str)


def choice_label(code: str):
    """A status's or a patient request's label (``visit.scheduled``, ``request.confirm``) as a model's choices
    carry it: like a ``gettext_lazy`` string, it is read from the catalogue in the language active when it is shown
    (the user's on a page, the centre's in a care-team email; English when none is, as in migrations)."""
    CHOICE_CODES.add(code)
    return _choice_text_lazy(code)


def visit_label(rule_code: str, own_label: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A visit's name in ``language``: its own label (written by its protocol version) in English, the catalogue's
    ``visits`` entry for its rule code in another language (the own label when the catalogue has none)."""
    language = _language(language)
    if language == DEFAULT_LANGUAGE:
        return own_label
    labels = catalogue().sections["visits"].get(rule_code)
    return labels.get(language, own_label) if labels else own_label


def labels_of(codes: Iterable[str], language: str = DEFAULT_LANGUAGE) -> list[dict[str, str]]:
    """``[{"code", "label"}]`` for a list of codes, in order: the API's and the exports' display form."""
    return labels_shown(labels_in(language), codes)


def labels_shown(labels: Mapping[str, str], codes: Iterable[str]) -> list[dict[str, str]]:
    """``labels_of`` with the labels of one language at hand (``labels_in``), for a caller that shows many lists."""
    return [{"code": code, "label": labels.get(code, code)} for code in codes]
