"""The analytes catalogue is cited data: every LOINC code with its long common name, a code belonging to one analyte
only, every analyte's quantity convertible (the signal rules' units or the catalogue's own), and the shipped codes
well formed (the LOINC mod-10 check digit holds, except for the one kept as the clinical reference miswrote it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from surveillance.care.results import result_units
from surveillance.seeds.analytes import AnalytesError, analytes_from_dict, analytes_read, units_read

SEEDS = Path(settings.CARTWATCH["SEEDS_DIR"])


def loinc_check_digit_holds(code: str) -> bool:
    """LOINC's mod-10 check: from the right of the number, every other digit doubled, the digits summed."""
    number, _, check = code.partition("-")
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return check.isdigit() and (10 - total % 10) % 10 == int(check)


def entry(loinc) -> dict:
    return {"analytes": {"igg_level": {"loinc": loinc, "quantity": "immunoglobulin", "assessments": ["igg"]}}}


@pytest.mark.parametrize("loinc", [["2465-3"], {"2465-3": ""}, {}])
def test_it_refuses_a_loinc_code_without_its_long_common_name(loinc):
    with pytest.raises(AnalytesError, match="long common name"):
        analytes_from_dict(entry(loinc))


def test_it_refuses_one_code_for_two_analytes():
    data = entry({"2465-3": "IgG [Mass/volume] in Serum or Plasma"})
    data["analytes"]["other"] = {"loinc": {"2465-3": "IgG"}, "quantity": "immunoglobulin", "assessments": ["igg"]}
    with pytest.raises(AnalytesError, match="2465-3 is also igg_level"):
        analytes_from_dict(data)


def test_it_refuses_a_units_table_without_factors():
    with pytest.raises(AnalytesError, match=r"units\.ferritin"):
        units_read({"units": {"ferritin": {"canonical": "ng/mL"}}})


@pytest.mark.django_db
def test_it_ships_analytes_whose_quantities_all_convert_and_whose_codes_are_well_formed():
    shipped = analytes_read(SEEDS)
    units = result_units()
    assert all(analyte.quantity in units for analyte in shipped.values())
    codes = [code for analyte in shipped.values() for code in analyte.loinc]
    assert [code for code in codes if not loinc_check_digit_holds(code)] == ["709-8"]
    assert "709-6" in shipped["blasts"].loinc
