"""`load_seeds`: idempotent, adds new protocol versions without touching old ones, refuses silent edits."""

from __future__ import annotations

import shutil

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command

from surveillance.models import CarTProduct, ProductCode, Protocol, ProtocolRule
from surveillance.seeds.loader import SeedError, SeedReport, seeds_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeds_copy(tmp_path):
    target = tmp_path / "seeds"
    shutil.copytree(settings.CARTWATCH["SEEDS_DIR"], target)
    return target


def test_it_loads_the_seven_products_with_their_codes():
    assert set(CarTProduct.objects.values_list("code", flat=True)) == {
        "kymriah",
        "yescarta",
        "tecartus",
        "breyanzi",
        "abecma",
        "carvykti",
        "aucatzyl",
    }
    yescarta = CarTProduct.objects.get(code="yescarta")
    assert (yescarta.target_antigen, yescarta.vector_type) == ("CD19", "gammaretroviral")
    assert ProductCode.objects.filter(product=yescarta, code="Q2041").exists()
    assert ProductCode.objects.get(code="38228").product is None  # generic CAR-T administration


def test_it_loads_both_protocols_with_cited_rules():
    standard = Protocol.objects.current("standard")
    intensified = Protocol.objects.current("intensified")
    assert (standard.variant, intensified.variant) == ("standard", "intensified")
    assert not ProtocolRule.objects.filter(source="").exists()
    standard_codes = set(standard.rules.values_list("code", flat=True))
    assert {"D14", "D28", "M3", "M6", "M12", "Y2_5", "Y6_15", "LIFELONG"} <= standard_codes
    assert standard_codes < set(intensified.rules.values_list("code", flat=True))


def test_it_changes_nothing_when_loaded_twice():
    report = seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    assert (report.products_created, report.products_updated, report.codes_created) == (0, 0, 0)
    assert report.protocols_created == []
    assert sorted(report.protocols_unchanged) == ["intensified v1", "intensified v2", "standard v1", "standard v2"]


def test_it_adds_a_new_protocol_version_without_touching_the_old(seeds_copy):
    old = Protocol.objects.current("standard")
    old_rules = list(old.rules.values_list("code", "window_before_days", "window_after_days"))
    data = yaml.safe_load((seeds_copy / "protocols" / f"standard-v{old.version}.yaml").read_text())
    data["version"] = new = old.version + 1
    next(rule for rule in data["rules"] if rule["code"] == "M6")["window"] = {"before": 30, "after": 30}
    (seeds_copy / "protocols" / f"standard-v{new}.yaml").write_text(yaml.safe_dump(data))

    report = seeds_load(seeds_copy)
    assert f"standard v{new}" in report.protocols_created
    assert Protocol.objects.current("standard").version == new
    old.refresh_from_db()
    assert list(old.rules.values_list("code", "window_before_days", "window_after_days")) == old_rules
    assert Protocol.objects.get(code="standard", version=new).rules.get(code="M6").window_before_days == 30


def test_it_refuses_a_changed_file_for_a_version_already_loaded(seeds_copy):
    path = seeds_copy / "protocols" / "standard-v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["rules"][-1]["window"] = {"before": 10, "after": 10}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SeedError, match="already loaded with different content"):
        seeds_load(seeds_copy)
    with pytest.raises(CommandError, match="new version number"):
        call_command("load_seeds", "--dir", str(seeds_copy))


def test_it_rejects_an_invalid_rule_naming_the_file_and_loads_nothing(seeds_copy):
    data = yaml.safe_load((seeds_copy / "protocols" / "standard-v1.yaml").read_text())
    data["version"] = 3
    data["rules"][3]["window"] = {"before": -1, "after": 2}
    (seeds_copy / "protocols" / "standard-v3.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SeedError, match=r"standard-v3\.yaml"):
        seeds_load(seeds_copy)
    assert not Protocol.objects.filter(code="standard", version=3).exists()


def test_it_reports_what_it_loaded():
    assert "protocols: none created" in str(SeedReport())


def test_it_requires_a_pinned_base_so_a_new_base_version_cannot_change_a_protocol(seeds_copy):
    path = seeds_copy / "protocols" / "intensified-v1.yaml"
    path.write_text(path.read_text().replace("extends: standard@1", "extends: standard"))
    with pytest.raises(SeedError, match="must name a version"):
        seeds_load(seeds_copy)
