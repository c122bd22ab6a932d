"""The pure schedule engine: properties that must hold for every infusion, plus the awkward calendar cases.

No Django here: the protocols are read from the seed files through ``protocol_file.load_protocol_file``.
"""

from __future__ import annotations

import calendar
import copy
import dataclasses
import datetime as dt
from pathlib import Path
from unittest import mock

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.scheduling import engine
from surveillance.scheduling.engine import (
    AGE_THRESHOLD,
    NO_REMINDERS,
    PRIOR_LINES_THRESHOLD,
    RISK_FLAGS,
    ConditionState,
    InfusionFacts,
    OffsetUnit,
    ProtocolSpec,
    RuleSpec,
    age_on,
    choose_variant,
    intensified_reasons,
    occurrence_offsets,
    plan_visits,
    rule_applies,
)
from surveillance.scheduling.protocol_file import load_protocol_file, protocol_from_dict

PROTOCOLS_DIR = Path(__file__).resolve().parents[2] / "seeds" / "protocols"
STANDARD = load_protocol_file(PROTOCOLS_DIR / "standard-v1.yaml")
INTENSIFIED = load_protocol_file(PROTOCOLS_DIR / "intensified-v1.yaml")


def facts_for(
    infusion_date: dt.date,
    *,
    target: str = "CD19",
    vector: str = "gammaretroviral",
    birth_date: dt.date | None = dt.date(1970, 5, 17),
    flags: frozenset[str] = frozenset(),
    prior_lines: int | None = 1,
    conditions: dict[str, ConditionState] | None = None,
) -> InfusionFacts:
    return InfusionFacts(
        infusion_date=infusion_date,
        target_antigen=target,
        vector_type=vector,
        birth_date=birth_date,
        risk_flags=frozenset(flags),
        prior_lines=prior_lines,
        conditions=conditions or {},
    )


@st.composite
def infusion_facts(draw, conditions: bool = True) -> InfusionFacts:
    infusion = draw(st.dates(dt.date(2010, 1, 1), dt.date(2070, 12, 31)))
    birth = draw(st.none() | st.dates(infusion - relativedelta(years=95), infusion - relativedelta(years=1)))
    state = {}
    if conditions and draw(st.booleans()):
        ends = st.dates(infusion - dt.timedelta(days=30), infusion + relativedelta(years=2))
        until = draw(st.none() | ends)
        state["counts_low"] = ConditionState(active=draw(st.booleans()), until=until)
    return facts_for(
        infusion,
        target=draw(st.sampled_from(["CD19", "BCMA"])),
        vector=draw(st.sampled_from(["lentiviral", "gammaretroviral"])),
        birth_date=birth,
        flags=draw(st.frozensets(st.sampled_from(sorted(RISK_FLAGS)))),
        prior_lines=draw(st.none() | st.integers(0, 8)),
        conditions=state,
    )


protocols = st.sampled_from([STANDARD, INTENSIFIED])
horizons = st.integers(min_value=0, max_value=40)


def identities(visits) -> set[tuple]:
    return {(v.rule_code, v.occurrence, v.due_date, v.window_start, v.window_end) for v in visits}


def offset_of(protocol: ProtocolSpec, rule_code: str, occurrence: int) -> tuple[int, OffsetUnit]:
    rule = protocol.rule(rule_code)
    return rule.offset_amount + (occurrence - 1) * (rule.repeat_every or 0), rule.offset_unit


# ----------------------------------------------------------------------------------------------------
# Properties of every plan


@settings(max_examples=300, deadline=None)
@given(infusion_facts(), horizons, protocols)
def test_it_keeps_every_due_date_inside_its_window(facts, horizon, protocol):
    for visit in plan_visits(protocol, facts, horizon):
        assert visit.window_start <= visit.due_date <= visit.window_end, visit
        rule = protocol.rule(visit.rule_code)
        assert (visit.due_date - visit.window_start).days == rule.window_before
        assert (visit.window_end - visit.due_date).days == rule.window_after


@settings(max_examples=300, deadline=None)
@given(infusion_facts(), horizons, protocols)
def test_it_orders_visits_and_never_repeats_an_identity(facts, horizon, protocol):
    visits = plan_visits(protocol, facts, horizon)
    keys = [(v.due_date, v.rule_code, v.occurrence) for v in visits]
    assert keys == sorted(keys)
    ids = [(v.rule_code, v.occurrence) for v in visits]
    assert len(ids) == len(set(ids))
    assert all(v.occurrence >= 1 for v in visits)


@settings(max_examples=300, deadline=None)
@given(infusion_facts(), horizons, protocols)
def test_it_plans_nothing_past_the_horizon(facts, horizon, protocol):
    end = facts.infusion_date + relativedelta(years=horizon)
    visits = plan_visits(protocol, facts, horizon)
    assert all(v.due_date <= end for v in visits)
    if horizon >= 16:  # the lifelong rule runs right up to the horizon, then stops
        lifelong = [v for v in visits if v.rule_code == "LIFELONG"]
        assert lifelong[-1].due_date == end
        assert len(lifelong) == horizon - 15


@settings(max_examples=300, deadline=None)
@given(infusion_facts(), horizons)
def test_the_intensified_plan_contains_the_standard_plan(facts, horizon):
    standard_plan = plan_visits(STANDARD, facts, horizon)
    intensified_plan = plan_visits(INTENSIFIED, facts, horizon)
    regular = identities([v for v in standard_plan if v.rule_code != "M2"])
    intensified = identities(intensified_plan)
    assert regular <= intensified
    assert (regular != intensified) == (horizon >= 1)  # M9 falls inside any horizon of a year or more
    # A conditional visit is either planned too, or done at an intensified visit whose window holds its day.
    for visit in (v for v in standard_plan if v.rule_code == "M2"):
        assert identities([visit]) <= intensified or any(
            visit.window_start <= host.due_date <= visit.window_end and set(visit.assessments) <= set(host.assessments)
            for host in intensified_plan
        )


@settings(max_examples=300, deadline=None)
@given(infusion_facts(), horizons, protocols)
def test_it_anchors_every_occurrence_on_the_infusion_date_not_the_last_visit(facts, horizon, protocol):
    start = facts.infusion_date
    for visit in plan_visits(protocol, facts, horizon):
        amount, unit = offset_of(protocol, visit.rule_code, visit.occurrence)
        if unit == OffsetUnit.DAY:
            assert (visit.due_date - start).days == amount
            continue
        months = amount * (12 if unit == OffsetUnit.YEAR else 1)
        due = visit.due_date
        assert (due.year * 12 + due.month) - (start.year * 12 + start.month) == months
        # Same day of the month as the infusion, or the month's last day when the month is shorter.
        assert due.day == min(start.day, calendar.monthrange(due.year, due.month)[1])


@settings(max_examples=200, deadline=None)
@given(infusion_facts(), horizons, horizons, protocols)
def test_a_longer_horizon_only_adds_later_visits_with_the_same_numbers(facts, h1, h2, protocol):
    short, long_ = sorted((h1, h2))
    end = facts.infusion_date + relativedelta(years=short)
    longer = plan_visits(protocol, facts, long_)
    assert plan_visits(protocol, facts, short) == [v for v in longer if v.due_date <= end]


@settings(max_examples=200, deadline=None)
@given(infusion_facts(), st.integers(0, 40), st.sampled_from(sorted(RISK_FLAGS)))
def test_a_new_risk_flag_never_turns_an_intensified_patient_back_to_standard(facts, prior, flag):
    flagged = facts_for(
        facts.infusion_date,
        target=facts.target_antigen,
        vector=facts.vector_type,
        birth_date=facts.birth_date,
        flags=facts.risk_flags | {flag},
        prior_lines=facts.prior_lines,
    )
    assert choose_variant(flagged) == "intensified"
    assert set(intensified_reasons(facts)) <= set(intensified_reasons(flagged))


@settings(max_examples=200, deadline=None)
@given(infusion_facts(), protocols)
def test_it_asks_for_rcr_or_rcl_by_vector_and_the_neuro_screen_only_for_bcma(facts, protocol):
    visits = plan_visits(protocol, facts, 20)
    codes = {code for v in visits for code in v.assessments}
    assert ("rcr_sample" in codes) == (facts.vector_type == "gammaretroviral")
    assert ("rcl_sample" in codes) == (facts.vector_type == "lentiviral")
    neuro = {v.rule_code for v in visits if "neuro_screen" in v.assessments}
    if facts.target_antigen == "BCMA":
        assert {"D28", "M3"} <= neuro <= {"D28", "M2", "M3"}
    else:
        assert not neuro


# ----------------------------------------------------------------------------------------------------
# Conditional rules (M2: monthly counts while cytopenic)


@settings(max_examples=200, deadline=None)
@given(infusion_facts(conditions=False), protocols)
def test_it_plans_no_conditional_visit_without_a_recorded_decision(facts, protocol):
    assert not [v for v in plan_visits(protocol, facts) if v.rule_code == "M2"]


def test_it_plans_no_conditional_visit_when_the_decision_says_the_condition_does_not_hold():
    facts = facts_for(dt.date(2025, 3, 10), conditions={"counts_low": ConditionState(active=False)})
    assert not [v for v in plan_visits(STANDARD, facts) if v.rule_code == "M2"]


def test_it_plans_monthly_counts_from_month_2_to_month_11_while_the_condition_holds():
    facts = facts_for(dt.date(2025, 3, 10), conditions={"counts_low": ConditionState(active=True)})
    plan = plan_visits(STANDARD, facts)
    m2 = [(v.occurrence, v.due_date) for v in plan if v.rule_code == "M2"]
    # Months 3 and 6 fall two days after M3 (day 90) and M6 (day 182): those visits take the counts instead.
    assert m2 == [
        (1, dt.date(2025, 5, 10)),
        (3, dt.date(2025, 7, 10)),
        (4, dt.date(2025, 8, 10)),
        (6, dt.date(2025, 10, 10)),
        (7, dt.date(2025, 11, 10)),
        (8, dt.date(2025, 12, 10)),
        (9, dt.date(2026, 1, 10)),
        (10, dt.date(2026, 2, 10)),
    ]
    hosts = {v.rule_code: v for v in plan if v.rule_code in ("M3", "M6")}
    for host in hosts.values():
        assert {"cbc_diff", "igg", "cd4_count"} <= set(host.assessments)


def test_it_stops_conditional_visits_at_the_decision_end_date():
    until = dt.date(2025, 7, 9)  # the day before the month-4 visit: months 2 and 3 only (3 is done at M3)
    decision = ConditionState(active=True, until=until)
    facts = facts_for(dt.date(2025, 3, 10), conditions={"counts_low": decision})
    m2 = [(v.occurrence, v.due_date) for v in plan_visits(STANDARD, facts) if v.rule_code == "M2"]
    assert m2 == [(1, dt.date(2025, 5, 10))]
    # An end date on the due date itself keeps that visit.
    facts = facts_for(
        dt.date(2025, 3, 10),
        conditions={"counts_low": ConditionState(active=True, until=dt.date(2025, 7, 10))},
    )
    assert [v.occurrence for v in plan_visits(STANDARD, facts) if v.rule_code == "M2"] == [1, 3]


@settings(max_examples=200, deadline=None)
@given(infusion_facts(conditions=False), st.integers(-40, 500))
def test_conditional_visits_are_the_open_ended_ones_up_to_the_end_date(facts, days):
    until = facts.infusion_date + dt.timedelta(days=days)
    open_ended = facts_for(facts.infusion_date, conditions={"counts_low": ConditionState(active=True)})
    decision = ConditionState(active=True, until=until)
    bounded = facts_for(facts.infusion_date, conditions={"counts_low": decision})
    every = [v for v in plan_visits(STANDARD, open_ended) if v.rule_code == "M2"]
    kept = [v for v in plan_visits(STANDARD, bounded) if v.rule_code == "M2"]
    assert 8 <= len(every) <= 10  # months 2-11, less those done at a regular visit
    assert kept == [v for v in every if v.due_date <= until]


@settings(max_examples=200, deadline=None)
@given(infusion_facts(), horizons, protocols)
def test_it_folds_only_the_conditional_rules_that_apply_to_the_same_plan(facts, horizon, protocol):
    plan = plan_visits(protocol, facts, horizon)
    every = {rule.code for rule in protocol.rules if rule.condition}
    absorb = engine._absorb_conditional
    folded: list[set[str]] = []

    def with_every_conditional_rule(visits, codes):
        folded.append(codes)
        return absorb(visits, every)

    with mock.patch.object(engine, "_absorb_conditional", with_every_conditional_rule):
        assert plan_visits(protocol, facts, horizon) == plan
    state = facts.conditions.get("counts_low")
    assert folded == [{"M2"} if state is not None and state.active else set()]


# ----------------------------------------------------------------------------------------------------
# Month ends and leap days (explicit examples)


def monthly_protocol(until: int) -> ProtocolSpec:
    return protocol_from_dict(
        {
            "code": "monthly",
            "version": 1,
            "variant": "standard",
            "rules": [
                {
                    "code": "MONTHLY",
                    "label": "Monthly",
                    "kind": "lab",
                    "offset": {"amount": 1, "unit": "month"},
                    "repeat": {"every": 1, "until": until},
                    "window": {"before": 3, "after": 3},
                    "source": "test [I]",
                }
            ],
        }
    )


def test_it_clamps_a_31_january_infusion_to_the_end_of_each_shorter_month_without_drifting():
    dues = [v.due_date for v in plan_visits(monthly_protocol(4), facts_for(dt.date(2024, 1, 31)))]
    assert dues == [dt.date(2024, 2, 29), dt.date(2024, 3, 31), dt.date(2024, 4, 30), dt.date(2024, 5, 31)]
    dues = [v.due_date for v in plan_visits(monthly_protocol(2), facts_for(dt.date(2023, 1, 31)))]
    assert dues == [dt.date(2023, 2, 28), dt.date(2023, 3, 31)]


def test_it_keeps_the_30th_after_february_for_a_30_august_infusion():
    dues = [v.due_date for v in plan_visits(monthly_protocol(7), facts_for(dt.date(2023, 8, 30)))]
    assert dues == [
        dt.date(2023, 9, 30),
        dt.date(2023, 10, 30),
        dt.date(2023, 11, 30),
        dt.date(2023, 12, 30),
        dt.date(2024, 1, 30),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 30),
    ]


def test_it_puts_a_leap_day_infusions_anniversaries_on_28_february_in_common_years():
    plan = plan_visits(STANDARD, facts_for(dt.date(2024, 2, 29)))
    visits = {(v.rule_code, v.occurrence): v.due_date for v in plan}
    assert visits[("M12", 1)] == dt.date(2025, 2, 28)
    assert [visits[("Y2_5", n)] for n in range(1, 5)] == [
        dt.date(2026, 2, 28),
        dt.date(2027, 2, 28),
        dt.date(2028, 2, 29),
        dt.date(2029, 2, 28),
    ]
    assert visits[("LIFELONG", 1)] == dt.date(2040, 2, 29)
    assert visits[("M3", 1)] == dt.date(2024, 5, 29)  # day offsets count days: 90 days after 29 Feb


def test_day_offsets_count_days_not_calendar_months():
    # 31 Mar: 90 days is 29 Jun (3 calendar months would be 30 Jun), 182 days is 29 Sep (not 30 Sep).
    plan = plan_visits(STANDARD, facts_for(dt.date(2025, 3, 31)))
    visits = {(v.rule_code, v.occurrence): (v.due_date, v.window_start, v.window_end) for v in plan}
    assert visits[("M3", 1)] == (dt.date(2025, 6, 29), dt.date(2025, 6, 24), dt.date(2025, 7, 24))
    assert visits[("M6", 1)] == (dt.date(2025, 9, 29), dt.date(2025, 8, 28), dt.date(2025, 10, 27))
    assert visits[("D28", 1)] == (dt.date(2025, 4, 28), dt.date(2025, 4, 25), dt.date(2025, 5, 5))


def test_a_lifelong_rule_in_days_stops_on_the_horizon_date():
    daily = protocol_from_dict(
        {
            "code": "daily",
            "version": 1,
            "variant": "standard",
            "rules": [
                {
                    "code": "EVERY_DAY",
                    "label": "Every day",
                    "kind": "remote",
                    "offset": {"amount": 0, "unit": "day"},
                    "repeat": {"every": 1, "lifelong": True},
                    "window": {"before": 0, "after": 0},
                    "source": "test [I]",
                }
            ],
        }
    )
    visits = plan_visits(daily, facts_for(dt.date(2022, 3, 1)), 1)  # a common year: 365 days, not 366
    assert len(visits) == 366
    assert visits[-1].due_date == dt.date(2023, 3, 1)


def test_it_plans_the_intensified_month_9_on_29_february_for_a_31_may_infusion():
    plan = plan_visits(INTENSIFIED, facts_for(dt.date(2023, 5, 31)))
    visits = {(v.rule_code, v.occurrence): v for v in plan}
    assert visits[("M9", 1)].due_date == dt.date(2024, 2, 29)
    assert [visits[("M15_21", n)].due_date for n in range(1, 4)] == [
        dt.date(2024, 8, 31),
        dt.date(2024, 11, 30),
        dt.date(2025, 2, 28),
    ]
    assert visits[("Y2_5", 1)].due_date == dt.date(2025, 5, 31)  # month 24 is the year-2 annual visit
    assert [visits[("Y3_5_MID", n)].due_date for n in range(1, 4)] == [
        dt.date(2025, 11, 30),
        dt.date(2026, 11, 30),
        dt.date(2027, 11, 30),
    ]


def test_it_orders_a_31_january_infusions_visits_across_february():
    visits = plan_visits(INTENSIFIED, facts_for(dt.date(2025, 1, 31)), 3)
    m15 = [v.due_date for v in visits if v.rule_code == "M15_21"]
    assert m15 == [dt.date(2026, 4, 30), dt.date(2026, 7, 31), dt.date(2026, 10, 31)]


# ----------------------------------------------------------------------------------------------------
# Choosing the variant


def low_risk(**overrides) -> InfusionFacts:
    values = {
        "target": "CD19",
        "birth_date": dt.date(1970, 5, 17),
        "prior_lines": PRIOR_LINES_THRESHOLD - 1,
        "flags": frozenset(),
    }
    values.update(overrides)
    return facts_for(dt.date(2025, 6, 1), **values)


def test_it_picks_standard_when_no_trigger_applies():
    assert intensified_reasons(low_risk()) == ()
    assert choose_variant(low_risk()) == "standard"
    assert choose_variant(low_risk(birth_date=None, prior_lines=None)) == "standard"


@pytest.mark.parametrize("flag", sorted(RISK_FLAGS))
def test_it_picks_intensified_for_each_recorded_risk_flag(flag):
    facts = low_risk(flags=frozenset({flag}))
    assert choose_variant(facts) == "intensified"
    assert intensified_reasons(facts) == (flag,)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"prior_lines": PRIOR_LINES_THRESHOLD}, "prior_lines_ge_3"),
        ({"prior_lines": PRIOR_LINES_THRESHOLD + 3}, "prior_lines_ge_3"),
        ({"birth_date": dt.date(2025 - AGE_THRESHOLD, 6, 1)}, "age_ge_65"),  # 65 on the infusion day
        ({"target": "BCMA"}, "target_bcma"),
    ],
)
def test_it_picks_intensified_for_each_derived_trigger(overrides, reason):
    facts = low_risk(**overrides)
    assert choose_variant(facts) == "intensified"
    assert intensified_reasons(facts) == (reason,)


def test_it_picks_standard_the_day_before_the_65th_birthday():
    assert choose_variant(low_risk(birth_date=dt.date(2025 - AGE_THRESHOLD, 6, 2))) == "standard"


def test_it_lists_every_reason_flags_first():
    flags = frozenset({"prior_auto_hct", "clonal_haematopoiesis"})
    facts = low_risk(flags=flags, prior_lines=4, target="BCMA")
    assert intensified_reasons(facts) == (
        "clonal_haematopoiesis",
        "prior_auto_hct",
        "prior_lines_ge_3",
        "target_bcma",
    )


def test_age_on_counts_completed_years_and_a_leap_day_birthday_turns_on_1_march():
    assert age_on(dt.date(1960, 2, 29), dt.date(2025, 2, 28)) == 64
    assert age_on(dt.date(1960, 2, 29), dt.date(2025, 3, 1)) == 65
    assert age_on(dt.date(1960, 2, 29), dt.date(2024, 2, 29)) == 64
    with pytest.raises(ValueError):
        age_on(dt.date(2000, 1, 2), dt.date(2000, 1, 1))


def test_rule_filters_match_target_vector_and_flags():
    rule = RuleSpec(
        code="X",
        label="X",
        kind="clinic",
        offset_amount=1,
        offset_unit=OffsetUnit.MONTH,
        repeat_every=None,
        repeat_until=None,
        lifelong=False,
        window_before=0,
        window_after=0,
        applies_to={"target": ("BCMA",), "flags": ("prior_auto_hct", "age_ge_65")},
        source="test",
    )
    assert not rule_applies(rule, low_risk(target="BCMA"))
    assert rule_applies(rule, low_risk(target="BCMA", flags=frozenset({"prior_auto_hct"})))
    # A derived flag (age >= 65) counts, and the target matches in any case.
    assert rule_applies(rule, low_risk(target="bcma", birth_date=dt.date(1950, 1, 1)))
    assert not rule_applies(rule, low_risk(flags=frozenset({"prior_auto_hct"})))


def test_occurrence_offsets_number_from_1_and_stop_lifelong_rules_at_the_horizon():
    assert occurrence_offsets(STANDARD.rule("D1_7"), 30) == [(n, n) for n in range(1, 8)]
    assert occurrence_offsets(INTENSIFIED.rule("M15_21"), 30) == [(1, 15), (2, 18), (3, 21)]
    assert occurrence_offsets(STANDARD.rule("LIFELONG"), 20) == [(n, 15 + n) for n in range(1, 6)]
    assert occurrence_offsets(STANDARD.rule("LIFELONG"), 15) == []
    with pytest.raises(ValueError):
        occurrence_offsets(STANDARD.rule("M3"), -1)


# ----------------------------------------------------------------------------------------------------
# Parsing and validation


def valid_protocol() -> dict:
    return {
        "code": "standard",
        "version": 9,
        "variant": "standard",
        "rules": [
            {
                "code": "OK",
                "label": "Fine",
                "kind": "clinic",
                "offset": {"amount": 1, "unit": "month"},
                "window": {"before": 1, "after": 1},
                "source": "test [I]",
            },
            {
                "code": "BAD",
                "label": "To be broken",
                "kind": "clinic",
                "offset": {"amount": 2, "unit": "month"},
                "repeat": {"every": 1, "until": 4},
                "window": {"before": 5, "after": 5},
                "assessments": [{"code": "cbc", "label": "CBC"}],
                "source": "test [I]",
            },
        ],
    }


def _set(path: str, value):
    def mutate(rule: dict) -> None:
        *parents, last = path.split(".")
        target = rule
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_set("offset.unit", "week"), "offset.unit"),
        (_set("kind", "telephone"), "kind"),
        (_set("window.before", -1), "window.before"),
        (_set("window.after", -3), "window.after"),
        (_set("repeat", {"every": 1}), "repeat"),
        (_set("repeat", {"every": 1, "until": 1}), "repeat.until"),
        (_set("repeat.every", 0), "repeat.every"),
        (_set("offset.amount", "two"), "offset.amount"),
        (
            _set("assessments", [{"code": "cbc", "label": "CBC", "when": {"colour": ["red"]}}]),
            "assessments[1].when",
        ),
        (_set("applies_to", {"target": []}), "applies_to.target"),
        (_set("reminders", {"patient_days_before": [-1]}), "reminders.patient_days_before"),
        (_set("source", ""), "source"),
        (_set("windows", {"before": 1, "after": 1}), "windows"),
    ],
)
def test_it_rejects_bad_rule_data_naming_the_rule_and_the_field(mutate, field):
    data = valid_protocol()
    mutate(data["rules"][1])
    with pytest.raises(ValueError) as excinfo:
        protocol_from_dict(data)
    message = str(excinfo.value)
    assert "rule 'BAD'" in message
    assert field in message


def test_it_rejects_a_duplicate_rule_code_naming_it():
    data = valid_protocol()
    data["rules"][1]["code"] = "OK"
    with pytest.raises(ValueError, match=r"rule 'OK': code: duplicate"):
        protocol_from_dict(data)


def test_it_rejects_a_badly_formed_rule_code():
    data = valid_protocol()
    data["rules"][1]["code"] = "m3-bad"
    with pytest.raises(ValueError, match=r"rule 'm3-bad': code"):
        protocol_from_dict(data)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [("variant", "extreme", "variant"), ("version", 0, "version"), ("rules", [], "rules")],
)
def test_it_rejects_a_bad_protocol_header(key, value, field):
    data = valid_protocol()
    data[key] = value
    with pytest.raises(ValueError, match=field):
        protocol_from_dict(data)


def test_it_refuses_an_extension_without_its_base_or_with_the_wrong_one():
    child = {"code": "intensified", "version": 1, "variant": "intensified", "extends": "standard"}
    child["rules"] = [valid_protocol()["rules"][0]]
    with pytest.raises(ValueError, match="extends"):
        protocol_from_dict(child)
    other = valid_protocol() | {"code": "other"}
    with pytest.raises(ValueError, match="extends"):
        protocol_from_dict(child, base=other)
    with pytest.raises(ValueError, match="extends"):
        protocol_from_dict(child | {"extends": "standard@2"}, base=valid_protocol())


def test_an_extension_replaces_a_base_rule_in_place_and_appends_its_own():
    base = valid_protocol()
    child = {"code": "intensified", "version": 1, "variant": "intensified", "extends": "standard@9"}
    replaced = copy.deepcopy(base["rules"][0]) | {"label": "Replaced"}
    added = copy.deepcopy(base["rules"][0]) | {"code": "EXTRA"}
    child["rules"] = [added, replaced]
    spec = protocol_from_dict(child, base=base)
    assert [r.code for r in spec.rules] == ["OK", "BAD", "EXTRA"]
    assert spec.rule("OK").label == "Replaced"
    assert spec.variant == "intensified"


def test_it_defaults_reminders_by_kind():
    data = valid_protocol()
    data["rules"][0]["kind"] = "acute"
    spec = protocol_from_dict(data)
    assert spec.rule("OK").reminders == NO_REMINDERS
    assert spec.rule("BAD").reminders == engine.ReminderCadence()


def _as_definition(rule: RuleSpec) -> dict:
    """A rule in the shape the database hands back (ProtocolRule.as_definition after seeding._rule_fields)."""
    repeat = None
    if rule.repeat_every:
        repeat = {"every": rule.repeat_every}
        repeat.update({"lifelong": True} if rule.lifelong else {"until": rule.repeat_until})
    return {
        "code": rule.code,
        "label": rule.label,
        "kind": str(rule.kind),
        "offset": {"amount": rule.offset_amount, "unit": str(rule.offset_unit)},
        "repeat": repeat,
        "window": {"before": rule.window_before, "after": rule.window_after},
        "assessments": [
            {
                "code": a.code,
                "label": a.label,
                **({"when": {k: list(v) for k, v in a.when.items()}} if a.when else {}),
            }
            for a in rule.assessments
        ],
        "applies_to": {k: list(v) for k, v in rule.applies_to.items()},
        "condition": rule.condition or None,
        "reminders": {
            "patient_days_before": list(rule.reminders.patient_days_before),
            "care_team_window_open": rule.reminders.care_team_window_open,
            "escalate_overdue": rule.reminders.escalate_overdue,
        },
        "source": rule.source,
    }


@pytest.mark.parametrize("protocol", [STANDARD, INTENSIFIED], ids=["standard", "intensified"])
def test_a_protocol_read_back_from_the_database_shape_is_the_same_protocol(protocol):
    data = {
        "code": protocol.code,
        "version": protocol.version,
        "name": "x",
        "variant": protocol.variant,
        "rules": [_as_definition(r) for r in protocol.rules],
    }
    assert protocol_from_dict(data) == protocol


# ----------------------------------------------------------------------------------------------------
# The seed protocols themselves


@pytest.mark.parametrize("protocol", [STANDARD, INTENSIFIED], ids=["standard", "intensified"])
def test_every_seed_rule_cites_the_clinical_reference_with_a_tag(protocol):
    for rule in protocol.rules:
        assert "clinical-reference (" in rule.source, rule.code
        assert any(tag in rule.source for tag in ("[C", "[R", "[I")), rule.code


def test_the_intensified_protocol_redefines_standard_rules_without_moving_or_dropping_anything():
    assert (STANDARD.code, STANDARD.variant, INTENSIFIED.code, INTENSIFIED.variant) == (
        "standard",
        "standard",
        "intensified",
        "intensified",
    )
    for base in STANDARD.rules:
        rule = INTENSIFIED.rule(base.code)
        timing = ("kind", "offset_amount", "offset_unit", "repeat_every", "repeat_until", "lifelong")
        timing += ("window_before", "window_after", "applies_to", "condition", "reminders")
        assert {k: getattr(rule, k) for k in timing} == {k: getattr(base, k) for k in timing}, base.code
        assert {(a.code, tuple(a.when.items())) for a in base.assessments} <= {
            (a.code, tuple(a.when.items())) for a in rule.assessments
        }, base.code
    assert {r.code for r in INTENSIFIED.rules} - {r.code for r in STANDARD.rules} == {
        "M9",
        "M15_21",
        "Y3_5_MID",
    }


def test_the_intensified_plan_adds_the_ch_panel_at_months_12_and_24_and_a_yearly_skin_exam():
    flagged = facts_for(dt.date(2025, 1, 31), flags=frozenset({"prior_auto_hct"}))
    visits = plan_visits(INTENSIFIED, flagged, 20)
    ch = [(v.rule_code, v.occurrence, v.due_date) for v in visits if "ch_ngs_panel" in v.assessments]
    assert ch == [("M12", 1, dt.date(2026, 1, 31)), ("Y2_5", 1, dt.date(2027, 1, 31))]
    skin_years = sorted({v.due_date.year for v in visits if "derm_exam" in v.assessments})
    assert skin_years == list(range(2026, 2046))
    standard = plan_visits(STANDARD, facts_for(dt.date(2025, 1, 31)), 20)
    assert not [v for v in standard if "derm_exam" in v.assessments]


def test_acute_infusion_and_baseline_rules_send_no_reminders():
    for rule in INTENSIFIED.rules:
        if rule.kind in ("acute", "infusion", "baseline"):
            assert rule.reminders == NO_REMINDERS, rule.code
        else:
            assert rule.reminders.escalate_overdue and rule.reminders.patient_days_before, rule.code


@pytest.mark.parametrize("protocol", [STANDARD, INTENSIFIED], ids=["standard", "intensified"])
@given(infusion=st.dates(min_value=dt.date(2015, 1, 1), max_value=dt.date(2035, 12, 31)))
def test_it_never_plans_two_visits_on_the_same_day(protocol, infusion):
    decided = facts_for(infusion, flags=frozenset({"prior_auto_hct"}))
    decided = dataclasses.replace(decided, conditions={"counts_low": ConditionState(active=True)})
    visits = plan_visits(protocol, decided, 30)
    days = [v.due_date for v in visits if v.kind not in ("baseline", "infusion", "acute")]
    assert len(days) == len(set(days))


@settings(max_examples=500, deadline=None)
@given(st.dates(min_value=dt.date(2010, 1, 1), max_value=dt.date(2060, 12, 31)), st.integers(0, 12 * 40))
def test_it_shifts_months_and_years_as_relativedelta_does(anchor, months):
    assert engine._shift(anchor, months, engine.OffsetUnit.MONTH) == anchor + relativedelta(months=months)
    years = months // 12
    assert engine._shift(anchor, years, engine.OffsetUnit.YEAR) == anchor + relativedelta(years=years)
