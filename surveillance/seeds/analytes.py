"""The analytes catalogue (``seeds/analytes.yaml``): which LOINC codes are which measured analyte (a blood
count's, an immunoglobulin, a lymphocyte subset, a marker, a viral load), in which quantity, and which assessments
it belongs to. Each LOINC code is cited by its long common name. A quantity's units come from the signal rules'
table where the rules judge it (the blood counts), else from the catalogue's own ``units`` (``analyte_units``).

It is what lets a result recorded by hand and an Observation from an EHR land in the same row: both are keyed by
analyte, whatever LOINC code the laboratory used (751-8 automated or 753-4 manual neutrophils are one analyte).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from surveillance.seeds.files import yaml_read
from surveillance.signals.rules import Quantity, units_from_dict

FILE_NAME = "analytes.yaml"


class AnalytesError(ValueError):
    """The catalogue file is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Analyte:
    code: str
    loinc: tuple[str, ...]
    quantity: str  # a quantity of the signal rules' unit table (cells, haemoglobin, ...) or the catalogue's own
    assessments: tuple[str, ...]  # in order of preference: the first one a visit asks for takes the result

    def assessment_of(self, asked: list[str] | tuple[str, ...]) -> str | None:
        """The assessment of a visit asking for ``asked`` that this analyte's result belongs to, if any."""
        return next((code for code in self.assessments if code in asked), None)


def _loinc(value: object, where: str) -> tuple[str, ...]:
    """The codes of a mapping of LOINC code to its long common name (the citation): both required."""
    if not isinstance(value, dict) or not value:
        raise AnalytesError(f"{where}: expected a mapping of LOINC code to its long common name")
    for code, name in value.items():
        if not isinstance(code, str) or not code or not isinstance(name, str) or not name.strip():
            raise AnalytesError(f"{where}: LOINC {code!r} needs its long common name")
    return tuple(value)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
        raise AnalytesError(f"{where}: expected a non-empty list of codes")
    return tuple(value)


def analytes_from_dict(data: object) -> dict[str, Analyte]:
    if not isinstance(data, dict) or not isinstance(data.get("analytes"), dict):
        raise AnalytesError("expected a mapping 'analytes' of code to definition")
    found: dict[str, Analyte] = {}
    owner: dict[str, str] = {}
    for code, spec in data["analytes"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("quantity"), str):
            raise AnalytesError(f"analytes.{code}: expected loinc, quantity and assessments")
        analyte = Analyte(
            str(code),
            _loinc(spec.get("loinc"), f"analytes.{code}.loinc"),
            spec["quantity"],
            _strings(spec.get("assessments"), f"analytes.{code}.assessments"),
        )
        for loinc in analyte.loinc:
            if loinc in owner:
                raise AnalytesError(f"analytes.{code}: LOINC {loinc} is also {owner[loinc]}")
            owner[loinc] = analyte.code
        found[analyte.code] = analyte
    return found


def units_read(data: object) -> dict[str, Quantity]:
    """The catalogue's own units table: the quantities no signal rule judges (none if the file has none)."""
    if not isinstance(data, dict) or data.get("units") is None:
        return {}
    try:
        return units_from_dict(data["units"])
    except ValueError as exc:
        raise AnalytesError(str(exc)) from exc


def analytes_read(seeds_dir: Path) -> dict[str, Analyte]:
    """The catalogue's analytes, its units table checked too (what ``load_seeds`` checks before it loads)."""
    data = yaml_read(seeds_dir / FILE_NAME, AnalytesError)
    units_read(data)
    return analytes_from_dict(data)


@functools.cache
def _catalogue(seeds_dir: str | Path) -> tuple[Mapping[str, Analyte], Mapping[str, Analyte], Mapping[str, Quantity]]:
    """Keyed by the setting as given: an import looks an analyte up for every result it reads."""
    data = yaml_read(Path(seeds_dir) / FILE_NAME, AnalytesError)
    by_code = analytes_from_dict(data)
    by_loinc = {loinc: analyte for analyte in by_code.values() for loinc in analyte.loinc}
    return by_code, by_loinc, units_read(data)


def analytes() -> Mapping[str, Analyte]:
    """The analytes of the configured seeds folder, by code, read once per process."""
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])[0]


def analyte_for_loinc(loinc: str) -> Analyte | None:
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])[1].get(loinc)


def analyte_units() -> Mapping[str, Quantity]:
    """The catalogue's own units table (``units_read``), read once per process."""
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])[2]
