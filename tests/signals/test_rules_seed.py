"""``load_seeds`` loads the signal rules versions with the protocols: once, and immutable once loaded."""

from __future__ import annotations

import shutil

import pytest
import yaml
from django.conf import settings

from surveillance.models import SignalRuleSet
from surveillance.seeds.loader import SeedError, seeds_load
from surveillance.signals.review import ruleset_current

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeds_copy(tmp_path):
    target = tmp_path / "seeds"
    shutil.copytree(settings.CARTWATCH["SEEDS_DIR"], target)
    return target


def test_it_loads_the_signal_rules_and_changes_nothing_the_second_time():
    stored, rules = ruleset_current()
    assert (stored.code, stored.version, rules.code) == ("second-cancer", 2, "second-cancer")
    report = seeds_load(settings.CARTWATCH["SEEDS_DIR"])
    assert report.signal_rules_created == []
    assert report.signal_rules_unchanged == ["second-cancer v1", "second-cancer v2"]


def test_it_reads_circulating_blasts_under_the_manual_counts_code_from_version_2():
    _, rules = ruleset_current()
    [blasts] = [rule for rule in rules.laboratory if rule.kind == "blasts"]
    assert "709-6" in blasts.loinc and "709-8" in blasts.loinc
    old = SignalRuleSet.objects.get(version=1).content
    assert [rule["loinc"] for rule in old["laboratory"] if rule["kind"] == "blasts"] == [["709-8", "26446-5"]]


def test_it_refuses_a_changed_file_for_a_loaded_version(seeds_copy):
    path = seeds_copy / "signals" / "signals-v1.yaml"
    data = yaml.safe_load(path.read_text())
    data["laboratory"][0]["below"] = 1.0
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SeedError, match=r"signals-v1\.yaml: .* new version number"):
        seeds_load(seeds_copy)


def test_it_adds_a_new_version_which_becomes_current(seeds_copy):
    data = yaml.safe_load((seeds_copy / "signals" / "signals-v2.yaml").read_text())
    data["version"] = 3
    data["laboratory"][0]["loinc"].append("770-8")
    (seeds_copy / "signals" / "signals-v3.yaml").write_text(yaml.safe_dump(data))
    assert seeds_load(seeds_copy).signal_rules_created == ["second-cancer v3"]
    _, rules = ruleset_current()
    assert rules.version == 3 and "770-8" in rules.laboratory[0].loinc
    assert SignalRuleSet.objects.get(version=1).content["laboratory"][0]["loinc"] == ["751-8", "753-4", "26499-4"]


def test_it_names_the_file_of_an_invalid_rule_and_loads_nothing(seeds_copy):
    data = yaml.safe_load((seeds_copy / "signals" / "signals-v1.yaml").read_text())
    data["version"] = 4
    data["diagnoses"][0]["priority"] = "urgent"
    (seeds_copy / "signals" / "signals-v4.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SeedError, match=r"signals-v4\.yaml: diagnoses\[1\]: priority"):
        seeds_load(seeds_copy)
    assert not SignalRuleSet.objects.filter(version=4).exists()
