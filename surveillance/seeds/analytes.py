"""The analytes catalogue (``seeds/analytes.yaml``): which LOINC codes are which blood-count analyte, in which
quantity (the signal rules' unit table says which units it may come in), and which assessments it belongs to.

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

FILE_NAME = "analytes.yaml"


class AnalytesError(ValueError):
    """The catalogue file is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Analyte:
    code: str
    loinc: tuple[str, ...]
    quantity: str  # a quantity of the signal rules' unit table (cells, haemoglobin, cell_volume, percent)
    assessments: tuple[str, ...]  # in order of preference: the first one a visit asks for takes the result

    def assessment_of(self, asked: list[str] | tuple[str, ...]) -> str | None:
        """The assessment of a visit asking for ``asked`` that this analyte's result belongs to, if any."""
        return next((code for code in self.assessments if code in asked), None)


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
            _strings(spec.get("loinc"), f"analytes.{code}.loinc"),
            spec["quantity"],
            _strings(spec.get("assessments"), f"analytes.{code}.assessments"),
        )
        for loinc in analyte.loinc:
            if loinc in owner:
                raise AnalytesError(f"analytes.{code}: LOINC {loinc} is also {owner[loinc]}")
            owner[loinc] = analyte.code
        found[analyte.code] = analyte
    return found


def analytes_read(seeds_dir: Path) -> dict[str, Analyte]:
    return analytes_from_dict(yaml_read(seeds_dir / FILE_NAME, AnalytesError))


@functools.cache
def _catalogue(seeds_dir: str | Path) -> tuple[Mapping[str, Analyte], Mapping[str, Analyte]]:
    """Keyed by the setting as given: an import looks an analyte up for every result it reads."""
    by_code = analytes_read(Path(seeds_dir))
    return by_code, {loinc: analyte for analyte in by_code.values() for loinc in analyte.loinc}


def analytes() -> Mapping[str, Analyte]:
    """The analytes of the configured seeds folder, by code, read once per process."""
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])[0]


def analyte_for_loinc(loinc: str) -> Analyte | None:
    return _catalogue(settings.CARTWATCH["SEEDS_DIR"])[1].get(loinc)
