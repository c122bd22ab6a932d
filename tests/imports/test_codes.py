"""The CAR-T code index: which codings mark an infusion, and of which product."""

from __future__ import annotations

import pytest

from surveillance.imports.fhir.codes import PRODUCTS, CarTCodeIndex, product_names, product_slug
from tests.imports.conftest import CPT, HCPCS, ICD10PCS, NDC, RXNORM, concept


def test_it_reads_every_row_of_the_shared_code_list(codes):
    assert len(codes) == 56


@pytest.mark.parametrize(
    ("system", "code", "product"),
    [
        (HCPCS, "Q2041", "yescarta"),
        (HCPCS, "Q2042", "kymriah"),
        (HCPCS, "Q2053", "tecartus"),
        (HCPCS, "Q2054", "breyanzi"),
        (HCPCS, "Q2055", "abecma"),
        (HCPCS, "Q2056", "carvykti"),
        (HCPCS, "Q2058", "aucatzyl"),
        (ICD10PCS, "XW043J7", "kymriah"),
        (RXNORM, "2594780", "carvykti"),
        (NDC, "0078-0846-19", "kymriah"),
    ],
)
def test_it_maps_product_specific_codes_to_slugs(codes, system, code, product):
    assert codes.match([concept(system, code)]) == (product, (system, code))


@pytest.mark.parametrize(
    ("system", "code"), [(CPT, "0540T"), (CPT, "38228"), (ICD10PCS, "XW033C3"), (ICD10PCS, "XW043C3")]
)
def test_it_matches_generic_administration_codes_without_a_product(codes, system, code):
    assert codes.match([concept(system, code)]) == (None, (system, code))


@pytest.mark.parametrize("code", ["0537T", "0538T", "0539T", "38225", "38226", "38227"])
def test_it_does_not_take_process_steps_for_an_infusion(codes, code):
    assert codes.match([concept(CPT, code)]) is None
    assert [entry.code for entry in codes.codes_in([concept(CPT, code)])] == [code]


def test_it_prefers_the_product_code_over_the_generic_one(codes):
    concepts = [concept(CPT, "38228"), concept(HCPCS, "Q2056")]
    assert codes.match(concepts) == ("carvykti", (HCPCS, "Q2056"))


def test_it_finds_a_code_among_several_codings_of_one_concept(codes):
    mixed = {"coding": [{"system": "http://snomed.info/sct", "code": "80146002"}, {"system": CPT, "code": "0540T"}]}
    assert codes.match([mixed]) == (None, (CPT, "0540T"))


def test_it_ignores_look_alike_codes_in_other_systems(codes):
    assert codes.match([concept(RXNORM, "Q2041")]) is None
    assert codes.match([concept(CPT, "38229")]) is None
    assert codes.match([{"text": "CAR-T"}, None]) is None


def test_it_accepts_an_11_digit_ndc_and_https_systems(codes):
    assert codes.match([concept(NDC, "00078084619")]) == ("kymriah", (NDC, "0078-0846-19"))
    assert codes.match([concept("https://www.ama-assn.org/go/cpt/", "0540t")]) == (None, (CPT, "0540T"))


def test_it_reports_conflicting_products(codes):
    assert codes.products_in([concept(HCPCS, "Q2041"), concept(HCPCS, "Q2042")]) == {"yescarta", "kymriah"}


def test_it_builds_from_catalogue_rows():
    index = CarTCodeIndex.from_rows(
        [
            {"system": "urn:x", "code": "A", "product": "Yescarta", "marks_infusion": True},
            {"system": "urn:x", "code": "B", "product": None, "marks_infusion": False},
            {"system": "urn:x", "code": "C", "product": "newcel", "marks_infusion": True},
        ]
    )
    assert index.match([concept("urn:x", "A")]) == ("yescarta", ("urn:x", "A"))
    assert index.match([concept("urn:x", "B")]) is None
    assert index.match([concept("urn:x", "C")]) == ("newcel", ("urn:x", "C"))


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Yescarta", "yescarta"),
        ("CARVYKTI", "carvykti"),
        ("obecabtagene autoleucel (Aucatzyl)", "aucatzyl"),
        ("tisagenlecleucel", "kymriah"),
        ("any CAR-T (infusion event)", None),
        ("", None),
    ],
)
def test_it_reads_product_names(name, slug):
    assert product_slug(name) == slug


def test_it_names_every_product_by_slug_and_brand():
    names = product_names()
    for slug, (brand, _generic) in PRODUCTS.items():
        assert names[slug] == slug
        assert names[brand.casefold()] == slug
