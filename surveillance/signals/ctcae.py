"""CTCAE v5.0 grades for the blood counts the second-cancer signals watch.

Pure on purpose (no Django): the signal rules compare grades between results, and the boundaries are tested
one by one. Values are in the canonical units of ``rules`` (cells x 10^9/L, haemoglobin g/dL).

CTCAE v5.0 (National Cancer Institute, 2017), "Investigations" and "Blood and lymphatic system disorders":

- Neutrophil count decreased: 1 <LLN-1500/mm3; 2 <1500-1000/mm3; 3 <1000-500/mm3; 4 <500/mm3.
- Platelet count decreased: 1 <LLN-75,000/mm3; 2 <75,000-50,000/mm3; 3 <50,000-25,000/mm3; 4 <25,000/mm3.
- Anaemia: 1 Hgb <LLN-10.0 g/dL; 2 <10.0-8.0 g/dL; 3 <8.0 g/dL (grade 4 is defined by consequences, not a value).
- Lymphocyte count increased: 2 >4000-20,000/mm3; 3 >20,000/mm3 (no grade 1).

"<1500-1000" reads "below 1500 and at least 1000": a value on a boundary takes the milder grade. Grade 1 needs
the lower limit of normal (LLN), which differs by laboratory; the caller passes the result's own reference range
when the EHR sent one, else the default from the signal rules file.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Measure", "ctcae_grade"]


class Measure(StrEnum):
    NEUTROPHILS = "neutrophils"
    PLATELETS = "platelets"
    HAEMOGLOBIN = "haemoglobin"
    LYMPHOCYTES = "lymphocytes"


# Lower bounds of grades 2, 3 and 4 for the decreasing counts: a value below the bound has at least that grade.
_DECREASED: dict[Measure, tuple[float, ...]] = {
    Measure.NEUTROPHILS: (1.5, 1.0, 0.5),
    Measure.PLATELETS: (75.0, 50.0, 25.0),
    Measure.HAEMOGLOBIN: (10.0, 8.0),
}
# Upper bounds of grades 2 and 3 for the increasing count: a value above the bound has at least that grade.
_INCREASED: dict[Measure, tuple[float, ...]] = {Measure.LYMPHOCYTES: (4.0, 20.0)}


def ctcae_grade(measure: Measure | str, value: float, lln: float | None = None) -> int:
    """The CTCAE v5.0 grade (0 = none) of one result in canonical units; ``lln`` decides grade 1, if known."""
    measure = Measure(measure)
    if measure in _INCREASED:
        above = sum(1 for bound in _INCREASED[measure] if value > bound)
        return above + 1 if above else 0
    bounds = _DECREASED[measure]
    below = sum(1 for bound in bounds if value < bound)
    if below:
        return below + 1
    return 1 if lln is not None and value < lln else 0
