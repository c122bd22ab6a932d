"""Recognising CAR-T in EHR codings: which (system, code) marks an infusion, and of which product.

Built from rows ``{system, code, product, marks_infusion}``: the Django side builds them from its product
catalogue (``ProductCode``), tests read ``car_t_codes.csv`` with :meth:`CarTCodeIndex.from_csv`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Product slug -> (brand, generic name). The slugs are ``CarTProduct.code`` in the catalogue.
PRODUCTS: dict[str, tuple[str, str]] = {
    "kymriah": ("Kymriah", "tisagenlecleucel"),
    "yescarta": ("Yescarta", "axicabtagene ciloleucel"),
    "tecartus": ("Tecartus", "brexucabtagene autoleucel"),
    "breyanzi": ("Breyanzi", "lisocabtagene maraleucel"),
    "abecma": ("Abecma", "idecabtagene vicleucel"),
    "carvykti": ("Carvykti", "ciltacabtagene autoleucel"),
    "aucatzyl": ("Aucatzyl", "obecabtagene autoleucel"),
}

NDC_SYSTEM = "http://hl7.org/fhir/sid/ndc"

CodeMatch = tuple[str | None, tuple[str, str]]


def product_names() -> dict[str, str]:
    """Every accepted spelling (slug, brand, generic name; case-folded) -> product slug."""
    names: dict[str, str] = {}
    for slug, (brand, generic) in PRODUCTS.items():
        for name in (slug, brand, generic, generic.replace(" ", "-")):
            names[name.casefold()] = slug
    return names


_NAMES = product_names()
_PARENTHESISED = re.compile(r"\(([^()]*)\)\s*$")


def product_slug(name: str | None) -> str | None:
    """The slug for a product written as slug, brand, generic name or "generic (Brand)"; None if unknown."""
    if not name:
        return None
    text = name.strip().casefold()
    if text in _NAMES:
        return _NAMES[text]
    bracket = _PARENTHESISED.search(text)
    if bracket and bracket.group(1).strip() in _NAMES:
        return _NAMES[bracket.group(1).strip()]
    head = _PARENTHESISED.sub("", text).strip()
    return _NAMES.get(head)


def _system_key(system: str | None) -> str:
    """Systems compare without a trailing slash and with http/https treated alike."""
    text = (system or "").strip().rstrip("/")
    if text.startswith("https://"):
        text = "http://" + text[len("https://") :]
    return text


def _ndc11(code: str) -> str | None:
    """An NDC in 11-digit 5-4-2 form, from the hyphenated 10-digit or 11-digit forms; None if ambiguous."""
    parts = code.split("-")
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        labeler, product, package = parts
        if len(labeler) <= 5 and len(product) <= 4 and len(package) <= 2:
            return labeler.zfill(5) + product.zfill(4) + package.zfill(2)
        return None
    if len(parts) == 1 and code.isdigit() and len(code) == 11:
        return code
    return None


def _code_key(system_key: str, code: str | None) -> str:
    text = (code or "").strip()
    if system_key == NDC_SYSTEM:
        return _ndc11(text) or text
    return text.upper()


@dataclass(frozen=True, slots=True)
class CarTCode:
    system: str
    code: str
    product: str | None  # product slug; None for a code that names no product (CPT, generic ICD-10-PCS)
    marks_infusion: bool  # False for harvest / transport / preparation steps


def _codings(concepts: Iterable[Any] | None) -> Iterable[tuple[str | None, str | None]]:
    """(system, code) of every coding in CodeableConcepts given as fhir.resources models or dicts."""
    for concept in concepts or ():
        if concept is None:
            continue
        codings = concept.get("coding") if isinstance(concept, Mapping) else getattr(concept, "coding", None)
        for coding in codings or ():
            if isinstance(coding, Mapping):
                yield coding.get("system"), coding.get("code")
            else:
                yield getattr(coding, "system", None), getattr(coding, "code", None)


class CarTCodeIndex:
    """Look up CAR-T codes. Product-specific infusion codes win over generic administration codes."""

    def __init__(self, codes: Iterable[CarTCode]):
        self._by_key: dict[tuple[str, str], CarTCode] = {}
        for code in codes:
            system = _system_key(code.system)
            self._by_key[(system, _code_key(system, code.code))] = code

    def __len__(self) -> int:
        return len(self._by_key)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> CarTCodeIndex:
        """Rows of ``{system, code, product, marks_infusion}``; product is a slug (or brand/generic) or None.

        A product the index does not know by name is kept as given (the catalogue may hold newer products).
        """
        codes = []
        for row in rows:
            product = row.get("product") or None
            if product is not None:
                product = product_slug(product) or str(product).strip()
            codes.append(
                CarTCode(
                    system=str(row["system"]).strip(),
                    code=str(row["code"]).strip(),
                    product=product,
                    marks_infusion=bool(row.get("marks_infusion", True)),
                )
            )
        return cls(codes)

    @classmethod
    def from_csv(cls, path: str | Path) -> CarTCodeIndex:
        """Read ``car_t_codes.csv`` (code_system, code, display, product, source).

        Product texts such as "axicabtagene ciloleucel (Yescarta)" map to slugs; "any CAR-T (process step)"
        is a generic step that is not an infusion; "any CAR-T (infusion event)" and the generic ICD-10-PCS
        rows mark an infusion without naming a product.
        """
        rows = []
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                text = (row.get("product") or "").strip()
                slug = product_slug(text)
                if slug is None and "car-t" not in text.casefold():
                    raise ValueError(f"{path}: unknown product {text!r} for code {row.get('code')!r}")
                rows.append(
                    {
                        "system": row["code_system"],
                        "code": row["code"],
                        "product": slug,
                        "marks_infusion": "process step" not in text.casefold(),
                    }
                )
        return cls.from_rows(rows)

    def lookup(self, system: str | None, code: str | None) -> CarTCode | None:
        """The CAR-T code entry for one coding, infusion or not."""
        if not code:
            return None
        key = _system_key(system)
        return self._by_key.get((key, _code_key(key, code)))

    def codes_in(self, concepts: Iterable[Any] | None) -> list[CarTCode]:
        """Every CAR-T code (infusion or process step) among the concepts' codings, in order."""
        found = []
        for system, code in _codings(concepts):
            entry = self.lookup(system, code)
            if entry is not None and entry not in found:
                found.append(entry)
        return found

    def match(self, concepts: Iterable[Any] | None) -> CodeMatch | None:
        """``(product slug or None, (system, code))`` for the best infusion code, or None.

        A product-specific code wins over a generic administration code (CPT 0540T/38228, ICD-10-PCS
        XW033C3/XW043C3); process-step codes (harvest, transport, preparation) never match. The (system,
        code) returned is as the index spells it.
        """
        infusion = [entry for entry in self.codes_in(concepts) if entry.marks_infusion]
        if not infusion:
            return None
        best = next((entry for entry in infusion if entry.product), infusion[0])
        return best.product, (best.system, best.code)

    def products_in(self, concepts: Iterable[Any] | None) -> set[str]:
        """The distinct products named by infusion codes among the concepts (more than one is a conflict)."""
        return {entry.product for entry in self.codes_in(concepts) if entry.marks_infusion and entry.product}
