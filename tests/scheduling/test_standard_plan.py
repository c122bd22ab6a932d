"""The standard plan for one infusion, written out by hand from clinical-reference.md section (a).

Yescarta (CD19, gammaretroviral), infused Wednesday 31 Jan 2024 (a leap year, and a month end), standard
variant, no risk flags and no "counts low" decision (so no M2 visits). Every date below was counted on a
calendar, not produced by the engine: if the engine and this table disagree, one of them is wrong and a person
must decide which.

Worked arithmetic for the day offsets (February 2024 has 29 days):
- BASELINE: day -5 = 26 Jan; window 23 days before = 3 Jan, 0 after.
- D28: 28 Feb; +7 = 6 Mar (via 29 Feb).
- M3, 90 days: 29 to 29 Feb, +31 to 31 Mar (60), +30 to 30 Apr (90); -5 = 25 Apr; +25 = 25 May.
- M6, 182 days: 30 Apr (90), +31 to 31 May (121), +30 to 30 Jun (151), +31 to 31 Jul (182);
  -32 = 29 Jun; +28 = 28 Aug.
- M12 on the anniversary 31 Jan 2025: -30 = 1 Jan; +60 = 28 (to 28 Feb) + 31 (to 31 Mar) + 1 = 1 Apr 2025.
- Annual +/-45: 31 Jan - 45 = 17 Dec of the year before; 31 Jan + 45 = 17 Mar, or 16 Mar in a leap year.
- LIFELONG +/-60: 31 Jan 2040 - 60 = 2 Dec 2039; + 60 = 31 Mar 2040 (leap year: 29 to 29 Feb, 31 to 31 Mar).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from surveillance.scheduling.engine import InfusionFacts, plan_visits
from surveillance.scheduling.protocol_file import load_protocol_file

PROTOCOLS_DIR = Path(__file__).resolve().parents[2] / "seeds" / "protocols"

D = dt.date

# (rule_code, occurrence, due_date, window_start, window_end), up to and including the 16th anniversary.
EXPECTED = [
    ("BASELINE", 1, D(2024, 1, 26), D(2024, 1, 3), D(2024, 1, 26)),
    ("D0", 1, D(2024, 1, 31), D(2024, 1, 31), D(2024, 1, 31)),
    ("D1_7", 1, D(2024, 2, 1), D(2024, 2, 1), D(2024, 2, 1)),
    ("D1_7", 2, D(2024, 2, 2), D(2024, 2, 2), D(2024, 2, 2)),
    ("D1_7", 3, D(2024, 2, 3), D(2024, 2, 3), D(2024, 2, 3)),
    ("D1_7", 4, D(2024, 2, 4), D(2024, 2, 4), D(2024, 2, 4)),
    ("D1_7", 5, D(2024, 2, 5), D(2024, 2, 5), D(2024, 2, 5)),
    ("D1_7", 6, D(2024, 2, 6), D(2024, 2, 6), D(2024, 2, 6)),
    ("D1_7", 7, D(2024, 2, 7), D(2024, 2, 7), D(2024, 2, 7)),
    ("D14", 1, D(2024, 2, 14), D(2024, 2, 13), D(2024, 2, 16)),
    ("D28", 1, D(2024, 2, 28), D(2024, 2, 25), D(2024, 3, 6)),
    ("M3", 1, D(2024, 4, 30), D(2024, 4, 25), D(2024, 5, 25)),
    ("M6", 1, D(2024, 7, 31), D(2024, 6, 29), D(2024, 8, 28)),
    ("M12", 1, D(2025, 1, 31), D(2025, 1, 1), D(2025, 4, 1)),
    ("Y2_5", 1, D(2026, 1, 31), D(2025, 12, 17), D(2026, 3, 17)),
    ("Y2_5", 2, D(2027, 1, 31), D(2026, 12, 17), D(2027, 3, 17)),
    ("Y2_5", 3, D(2028, 1, 31), D(2027, 12, 17), D(2028, 3, 16)),
    ("Y2_5", 4, D(2029, 1, 31), D(2028, 12, 17), D(2029, 3, 17)),
    ("Y6_15", 1, D(2030, 1, 31), D(2029, 12, 17), D(2030, 3, 17)),
    ("Y6_15", 2, D(2031, 1, 31), D(2030, 12, 17), D(2031, 3, 17)),
    ("Y6_15", 3, D(2032, 1, 31), D(2031, 12, 17), D(2032, 3, 16)),
    ("Y6_15", 4, D(2033, 1, 31), D(2032, 12, 17), D(2033, 3, 17)),
    ("Y6_15", 5, D(2034, 1, 31), D(2033, 12, 17), D(2034, 3, 17)),
    ("Y6_15", 6, D(2035, 1, 31), D(2034, 12, 17), D(2035, 3, 17)),
    ("Y6_15", 7, D(2036, 1, 31), D(2035, 12, 17), D(2036, 3, 16)),
    ("Y6_15", 8, D(2037, 1, 31), D(2036, 12, 17), D(2037, 3, 17)),
    ("Y6_15", 9, D(2038, 1, 31), D(2037, 12, 17), D(2038, 3, 17)),
    ("Y6_15", 10, D(2039, 1, 31), D(2038, 12, 17), D(2039, 3, 17)),
    ("LIFELONG", 1, D(2040, 1, 31), D(2039, 12, 2), D(2040, 3, 31)),
]

# Years 16 to 30 of the lifelong rule: 15 visits, so 28 + 15 = 43 in all with the default 30-year horizon.
EXPECTED_TOTAL_WITH_HORIZON_30 = 43

YESCARTA_INFUSION = InfusionFacts(
    infusion_date=D(2024, 1, 31),
    target_antigen="CD19",
    vector_type="gammaretroviral",
    birth_date=D(1975, 9, 2),
    risk_flags=frozenset(),
    prior_lines=2,
)


def _plan():
    standard = load_protocol_file(PROTOCOLS_DIR / "standard-v1.yaml")
    return plan_visits(standard, YESCARTA_INFUSION, horizon_years=30)


def test_the_standard_plan_matches_the_hand_written_table_up_to_the_16th_anniversary():
    plan = _plan()
    sixteenth = D(2040, 1, 31)
    got = [(v.rule_code, v.occurrence, v.due_date, v.window_start, v.window_end) for v in plan]
    got = [row for row in got if row[2] <= sixteenth]
    assert got == EXPECTED


def test_the_standard_plan_has_43_visits_with_a_30_year_horizon_ending_on_the_30th_anniversary():
    plan = _plan()
    assert len(plan) == EXPECTED_TOTAL_WITH_HORIZON_30
    lifelong = [(v.occurrence, v.due_date) for v in plan if v.rule_code == "LIFELONG"]
    assert lifelong == [(n, D(2039 + n, 1, 31)) for n in range(1, 16)]
    assert lifelong[-1] == (15, D(2054, 1, 31))


def test_the_yescarta_plan_asks_for_rcr_not_rcl_and_no_bcma_neuro_screen():
    plan = {(v.rule_code, v.occurrence): v for v in _plan()}
    for key in [("M3", 1), ("M6", 1), ("M12", 1), ("Y2_5", 1), ("Y6_15", 10)]:
        assert "rcr_sample" in plan[key].assessments, key
    assert not any("rcl_sample" in v.assessments or "neuro_screen" in v.assessments for v in plan.values())
    assert "rcr_sample" not in plan[("LIFELONG", 1)].assessments  # the 15-year RCR/RCL track has closed
    assert plan[("M3", 1)].assessments[:2] == ("history_exam", "cbc_diff_smear")


def test_the_acute_visits_send_no_reminders_and_clinic_visits_do():
    plan = {(v.rule_code, v.occurrence): v for v in _plan()}
    for key in [("BASELINE", 1), ("D0", 1), ("D1_7", 3)]:
        assert plan[key].reminders.patient_days_before == ()
        assert not plan[key].reminders.escalate_overdue
    assert plan[("D14", 1)].reminders.patient_days_before == (2,)
    assert plan[("M3", 1)].reminders.patient_days_before == (14, 2)
    assert plan[("Y6_15", 1)].kind == "remote" and plan[("Y2_5", 1)].kind == "annual"
