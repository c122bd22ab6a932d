"""Results already on file are what new ones are compared with, across batches and imports, and never raise a
signal again (``ClinicalRecords.history``)."""

from __future__ import annotations

from surveillance.signals.rules import ClinicalRecords, InfusionFacts, LabResult, signals_evaluate
from tests.signals.conftest import INFUSED, day

FACTS = InfusionFacts(INFUSED, ("C83.3",))


def evaluate(rules, labs=(), history=()):
    return signals_evaluate(rules, FACTS, ClinicalRecords(labs=tuple(labs), history=tuple(history)))


def kinds(evaluation) -> list[str]:
    return sorted(signal.kind for signal in evaluation.signals)


def test_it_raises_no_new_macrocytosis_when_a_high_mcv_is_already_on_file(rules):
    new = [LabResult("787-2", 106, "fL", day(300), "Observation/mcv-300")]
    assert kinds(evaluate(rules, new)) == ["macrocytosis"]  # alone, it is new
    on_file = [LabResult("787-2", 104, "fL", day(200), "Observation/mcv-200")]
    assert evaluate(rules, new, history=on_file).signals == ()


def test_it_raises_macrocytosis_when_the_results_on_file_were_normal(rules):
    on_file = [LabResult("787-2", 91, "fL", day(200), "Observation/mcv-200")]
    new = [LabResult("787-2", 106, "fL", day(300), "Observation/mcv-300")]
    (signal,) = evaluate(rules, new, history=on_file).signals
    assert (signal.kind, signal.key) == ("macrocytosis", "Observation/mcv-300")


def test_it_sees_a_grade_rise_from_a_result_on_file_to_a_new_one(rules):
    on_file = [LabResult("777-3", 120, "10*3/uL", day(60), "Observation/plt-60")]  # grade 1
    new = [LabResult("777-3", 40, "10*3/uL", day(90), "Observation/plt-90")]  # grade 3
    signals = {signal.kind: signal for signal in evaluate(rules, new, history=on_file).signals}
    assert set(signals) == {"thrombocytopenia", "worsening_cytopenia"}
    assert signals["worsening_cytopenia"].key == "Observation/plt-90"


def test_it_never_raises_a_signal_from_a_result_on_file(rules):
    on_file = [
        LabResult("751-8", 0.4, "10*3/uL", day(60), "Observation/anc-60"),  # grade 4 neutropenia
        LabResult("787-2", 110, "fL", day(60), "Observation/mcv-60"),
        LabResult("709-6", 3, "%", day(60), "Observation/blasts-60"),
    ]
    assert evaluate(rules, history=on_file).signals == ()
    normal = [LabResult("751-8", 2.5, "10*3/uL", day(90), "Observation/anc-90")]
    assert evaluate(rules, normal, history=on_file).signals == ()


def test_it_counts_a_result_both_on_file_and_imported_again_once_as_new(rules):
    again = LabResult("787-2", 106, "fL", day(300), "Observation/mcv-300")
    assert kinds(evaluate(rules, [again], history=[again])) == ["macrocytosis"]
