"""Every assessment a protocol seed asks for reads as words, in English and in Spanish, and a catalogue with a gap
is refused at load time rather than showing a raw code on a page."""

from __future__ import annotations

import pytest
import yaml
from django.conf import settings

from surveillance.seeds import labels
from surveillance.seeds.loader import SeedError, seeds_load
from tests.seeds.conftest import seeds_copy_with_labels

SEEDS = settings.CARTWATCH["SEEDS_DIR"]


def protocol_assessment_codes() -> set[str]:
    codes = set()
    for path in (SEEDS / "protocols").glob("*.yaml"):
        for rule in yaml.safe_load(path.read_text(encoding="utf-8"))["rules"]:
            codes.update(item["code"] for item in rule.get("assessments") or [])
    return codes


def test_it_labels_every_protocol_assessment_in_english_and_spanish():
    catalogue = labels.catalogue_read(SEEDS)
    codes = protocol_assessment_codes()
    assert len(codes) > 40
    assert set(catalogue.languages) >= {"en", "es"}
    for code in codes:
        english, spanish = labels.label(code, "en"), labels.label(code, "es")
        assert english != code and spanish != code, code
        assert english != spanish or code == "ldh", code


def test_it_speaks_spanish_for_analytes_and_visit_kinds():
    assert labels.label("platelets", "es") == "Plaquetas"
    assert labels.label("annual", "es") == "Revisión anual"
    assert labels.label("igg_ivig_decision", "en") == "Serum IgG and decision to stop IVIG"
    assert labels.label("cibmtr_f4100", "fr") == "CIBMTR follow-up form (F4100)"  # no French: English
    assert labels.label("not_a_code", "es") == "not_a_code"


@pytest.mark.django_db
def test_it_refuses_seeds_whose_catalogue_leaves_an_assessment_unlabelled(tmp_path):
    target, data, write = seeds_copy_with_labels(tmp_path)
    del data["assessments"]["cibmtr_f4100"]["es"]
    write()
    with pytest.raises(SeedError, match=r"labels.yaml: assessments.cibmtr_f4100: expected a label in each"):
        seeds_load(target)
    del data["assessments"]["cibmtr_f4100"]
    write()
    with pytest.raises(SeedError, match=r"without a label: cibmtr_f4100 \(en\), cibmtr_f4100 \(es\)"):
        seeds_load(target)


def protocol_rules() -> dict[str, str]:
    rules = {}
    for path in (SEEDS / "protocols").glob("*.yaml"):
        for rule in yaml.safe_load(path.read_text(encoding="utf-8"))["rules"]:
            rules[rule["code"]] = rule["label"]
    return rules


def test_it_names_every_protocol_visit_in_spanish_and_keeps_the_protocols_own_english():
    rules = protocol_rules()
    assert len(rules) > 12
    for code, own in rules.items():
        assert labels.visit_label(code, own, "en") == own
        spanish = labels.visit_label(code, own, "es-es")
        assert spanish != own, code
    assert labels.visit_label("M9", "Month 9", "es") == "Mes 9"
    assert (
        labels.visit_label("NEW_RULE", "A visit the catalogue has not met", "es") == "A visit the catalogue has not met"
    )


@pytest.mark.django_db
def test_it_refuses_seeds_whose_catalogue_leaves_a_visit_unnamed(tmp_path):
    target, data, write = seeds_copy_with_labels(tmp_path)
    del data["visits"]["M9"]
    write()
    with pytest.raises(SeedError, match=r"visits without a label: M9 \(en\), M9 \(es\)"):
        seeds_load(target)
