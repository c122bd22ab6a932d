"""The pure evaluation: which records raise which signals after an infusion (clinical reference (g))."""

from __future__ import annotations

import pytest

from surveillance.signals.rules import (
    PRIORITIES,
    ClinicalRecords,
    Diagnosis,
    InfusionFacts,
    LabResult,
    VariantResult,
    indication_codes,
    ruleset_from_dict,
    signals_evaluate,
)
from tests.signals.conftest import INFUSED, day, monthly_normal_counts

FACTS = InfusionFacts(INFUSED, ("C83.3",))


def evaluate(rules, labs=(), diagnoses=(), variants=(), facts=FACTS):
    return signals_evaluate(rules, facts, ClinicalRecords(tuple(labs), tuple(diagnoses), tuple(variants)))


def kinds(evaluation) -> list[str]:
    return [signal.kind for signal in evaluation.signals]


def test_it_raises_nothing_from_two_years_of_normal_counts(rules):
    evaluation = evaluate(rules, monthly_normal_counts())
    assert evaluation.signals == ()
    assert evaluation.unconverted == ()


def test_it_ignores_cancers_diagnosed_before_the_infusion(rules):
    history = [
        Diagnosis("snomed", "254837009", day(-2000)),  # breast cancer (Synthea)
        Diagnosis("icd10", "C34.90", day(-400)),
        Diagnosis("icd10", "C84.40", day(-1)),
    ]
    assert evaluate(rules, diagnoses=history).signals == ()


def test_it_raises_a_grade_2_neutropenia_at_month_9(rules):
    labs = [*monthly_normal_counts(8), LabResult("751-8", 1.2, "10*3/uL", day(274), "Observation/anc-m9")]
    (signal,) = evaluate(rules, labs).signals
    assert (signal.kind, signal.grade, signal.day, signal.key) == ("neutropenia", 2, 274, "Observation/anc-m9")
    assert "1.2 10*9/L" in signal.summary


def test_it_counts_cytopenias_only_after_day_30(rules):
    early = [LabResult("751-8", 0.3, "10*3/uL", day(30)), LabResult("777-3", 20, "10*3/uL", day(14))]
    assert evaluate(rules, early).signals == ()
    assert kinds(evaluate(rules, [LabResult("751-8", 1.4, "10*3/uL", day(31))])) == ["neutropenia"]


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (LabResult("777-3", 60000, "/uL", day(120)), "thrombocytopenia"),
        (LabResult("26515-7", 70, "10^9/L", day(120)), "thrombocytopenia"),
        (LabResult("718-7", 95, "g/L", day(120)), "anaemia"),
        (LabResult("718-7", 5.5, "mmol/L", day(120)), "anaemia"),
        (LabResult("731-0", 5200, "cells/uL", day(10)), "lymphocytosis"),
        (LabResult("709-8", 2, "%", day(200)), "blasts"),
        (LabResult("709-6", 2, "%", day(200)), "blasts"),
    ],
)
def test_it_converts_common_units_before_comparing(rules, result, kind):
    assert kinds(evaluate(rules, [result])) == [kind]


def test_it_raises_nothing_on_a_unit_it_cannot_convert_and_says_so(rules):
    evaluation = evaluate(rules, [LabResult("718-7", 6.0, "mg/mL", day(120))])
    assert evaluation.signals == ()
    (line,) = evaluation.unconverted
    assert "718-7" in line and "'mg/mL'" in line and "g/dL" in line


def test_it_raises_macrocytosis_only_when_earlier_results_were_normal(rules):
    new = [LabResult("787-2", 92, "fL", day(-10)), LabResult("787-2", 104, "fL", day(200), "Observation/mcv")]
    (signal,) = evaluate(rules, new).signals
    assert (signal.kind, signal.key) == ("macrocytosis", "Observation/mcv")
    known = [LabResult("787-2", 103, "fL", day(-10)), LabResult("787-2", 104, "fL", day(200))]
    assert evaluate(rules, known).signals == ()


def test_it_raises_worsening_cytopenia_when_the_grade_rises_after_day_30(rules):
    labs = [
        LabResult("777-3", 120, "10*3/uL", day(60)),  # grade 1
        LabResult("777-3", 40, "10*3/uL", day(90), "Observation/plt-90"),  # grade 3
    ]
    signals = {signal.kind: signal for signal in evaluate(rules, labs).signals}
    assert set(signals) == {"thrombocytopenia", "worsening_cytopenia"}
    assert (signals["worsening_cytopenia"].grade, signals["worsening_cytopenia"].key) == (3, "Observation/plt-90")
    assert signals["worsening_cytopenia"].priority < signals["thrombocytopenia"].priority


def test_it_raises_no_worsening_when_the_grade_falls(rules):
    labs = [LabResult("751-8", 0.8, "10*3/uL", day(60)), LabResult("751-8", 1.8, "10*3/uL", day(90))]
    assert kinds(evaluate(rules, labs)) == ["neutropenia"]


def test_it_raises_a_new_t_cell_lymphoma_at_month_14_first(rules):
    diagnoses = [Diagnosis("icd10", "C44.91", day(300)), Diagnosis("icd10", "C84.40", day(426), "Condition/tcl")]
    evaluation = evaluate(rules, monthly_normal_counts(), diagnoses)
    first = evaluation.signals[0]
    assert (first.kind, first.priority, first.malignancy_type) == (
        "t_cell_lymphoma",
        PRIORITIES["highest"],
        "t_cell_lymphoma",
    )
    assert kinds(evaluation) == ["t_cell_lymphoma", "nmsc"]


def test_it_calls_a_haematologic_diagnosis_matching_the_indication_a_possible_relapse(rules):
    (signal,) = evaluate(rules, diagnoses=[Diagnosis("icd10", "C83.38", day(200))]).signals
    assert signal.kind == "possible_relapse"
    assert signal.malignancy_type is None
    (other,) = evaluate(rules, diagnoses=[Diagnosis("icd10", "C83.38", day(200))], facts=InfusionFacts(INFUSED)).signals
    assert other.kind == "other_haematologic"


@pytest.mark.parametrize(
    ("system", "code", "kind"),
    [
        ("icd10", "C91.50", "t_cell_lymphoma"),
        ("icd10", "C86.0", "t_cell_lymphoma"),
        ("icd10", "D46.9", "myeloid_neoplasm"),
        ("icd10", "D47.1", "myeloid_neoplasm"),
        ("icd10", "C92.00", "myeloid_neoplasm"),
        ("icd10", "C90.00", "other_haematologic"),
        ("icd10", "C44.311", "nmsc"),
        ("icd10", "C50.911", "solid_tumour"),
        ("icd10", "C97", "solid_tumour"),
        ("icd10", "D03.9", "in_situ_uncertain"),
        ("icd10", "D47.2", "in_situ_uncertain"),
        ("snomed", "254637007", "solid_tumour"),
        ("snomed", "91861009", "myeloid_neoplasm"),
    ],
)
def test_it_classifies_diagnoses_by_the_first_matching_range(rules, system, code, kind):
    assert kinds(evaluate(rules, diagnoses=[Diagnosis(system, code, day(400))])) == [kind]


def test_it_ignores_diagnoses_that_are_not_neoplasms(rules):
    assert (
        evaluate(
            rules, diagnoses=[Diagnosis("snomed", "91302008", day(40)), Diagnosis("icd10", "J18.9", day(40))]
        ).signals
        == ()
    )


def test_it_lists_an_undated_neoplasm_instead_of_guessing(rules):
    evaluation = evaluate(rules, diagnoses=[Diagnosis("icd10", "C84.40", None)])
    assert evaluation.signals == ()
    assert "C84.40" in evaluation.undated[0]


def test_it_raises_a_new_or_growing_clone_but_not_a_stable_one(rules):
    variants = [
        VariantResult("DNMT3A", 4.0, day(-20)),
        VariantResult("TET2", 2.5, day(-20)),
        VariantResult("DNMT3A", 4.5, day(365)),  # stable
        VariantResult("TET2", 6.0, day(365)),  # growing
        VariantResult("TP53", 3.0, day(365)),  # new
        VariantResult("ASXL1", 1.0, day(365)),  # below the CH threshold
    ]
    summaries = sorted(signal.summary for signal in evaluate(rules, variants=variants).signals)
    assert summaries == ["TET2 VAF 2.5% to 6%, day 365", "TP53 new clone, VAF 3%, day 365"]


def test_it_reads_icd10_codes_from_the_indication():
    assert indication_codes("DLBCL (C83.3), relapsed; c83.3 again; FL C82.90") == ("C83.3", "C82.90")
    assert indication_codes("Relapsed/refractory disease per label") == ()


def test_it_refuses_a_rules_file_with_an_unknown_quantity(rules_data):
    broken = {**rules_data, "laboratory": [{**rules_data["laboratory"][0], "quantity": "stones"}]}
    with pytest.raises(ValueError, match=r"laboratory\[1\]: quantity 'stones'"):
        ruleset_from_dict(broken)


def test_it_refuses_a_malformed_icd10_range(rules_data):
    broken = {**rules_data, "diagnoses": [{**rules_data["diagnoses"][0], "icd10": ["C81 to C96"]}]}
    with pytest.raises(ValueError, match="neither an ICD-10 code nor a range"):
        ruleset_from_dict(broken)


def test_every_rule_cites_its_source(rules):
    lab_and_diagnosis = [*rules.laboratory, *rules.diagnoses, rules.worsening, rules.clonal, rules.relapse]
    assert all(rule.source.strip() for rule in lab_and_diagnosis)
