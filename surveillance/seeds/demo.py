"""A realistic demo cohort, from the settings in ``seeds/demo.yaml``.

Deterministic: patient *i* is drawn from its own seeded generator, so a re-run with the same count changes nothing
and a larger count only adds patients. Infusions are planned by the real planner; the past is then filled in as a
clinic would have recorded it (completed or missed visits, closed follow-ups, second cancers at published rates).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.db import transaction
from django.utils import timezone

from surveillance.care import contact_details, infusions, lifecycle, reporting
from surveillance.care.risk_flags import FlagFacts
from surveillance.models import (
    CarTProduct,
    FollowUpVisit,
    Infusion,
    Patient,
    TreatmentCentre,
    VisitStatus,
)
from surveillance.models.patients import FlagSource, LadderStage, PatientStatus

#: Onset of each second-cancer type, in days after infusion (clinical reference (d): T-cell weeks to ~2 years,
#: haematologic median ~10 months, solid median ~26 months).
ONSET_DAYS = {
    "t_cell_lymphoma": (54, 400),
    "mds_aml": (180, 700),
    "other_haematologic": (150, 900),
    "solid": (300, 1500),
    "nmsc": (200, 1500),
}


@dataclass
class DemoReport:
    created: int = 0
    existing: int = 0
    events: int = 0

    def __str__(self) -> str:
        return f"demo cohort: {self.created} patients created, {self.existing} already there, {self.events} events"


def demo_settings(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def centres_ensure(cfg: dict) -> list[tuple[TreatmentCentre, dict]]:
    centres = []
    for item in cfg["centres"]:
        centre, _ = TreatmentCentre.objects.get_or_create(
            code=item["code"],
            defaults={
                **{
                    k: item.get(k, "")
                    for k in ("name", "time_zone", "care_team_email", "phone", "address", "opening_hours")
                },
                **{k: item[k] for k in ("country", "subdivision", "closed_weekdays") if k in item},
            },
        )
        centres.append((centre, item))
    return centres


def demo_cohort_create(count: int, cfg: dict, today: dt.date | None = None) -> DemoReport:
    today = today or timezone.localdate()
    report = DemoReport()
    centres = centres_ensure(cfg)
    products = {p.code: p for p in CarTProduct.objects.all()}
    mix = [(products[code], weight) for code, weight in cfg["product_mix"].items() if code in products]
    if not mix:
        raise ValueError("no products loaded: run load_seeds first")
    for i in range(1, count + 1):
        rng = random.Random(cfg["random_seed"] * 1_000_003 + i)
        centre, centre_cfg = _pick_centre(rng, centres)
        mrn = f"{centre_cfg['mrn_prefix']}-{i:06d}"
        if Patient.objects.filter(centre=centre, mrn=mrn).exists():
            report.existing += 1
            continue
        with transaction.atomic():
            report.events += _demo_patient(rng, i, centre, centre_cfg, mrn, mix, cfg, today)
        report.created += 1
    return report


def _pick_centre(rng: random.Random, centres):
    roll, total = rng.random(), 0.0
    for centre, item in centres:
        total += item["share"]
        if roll < total:
            return centre, item
    return centres[-1]


def _demo_number(country: str, i: int) -> str:
    """A made-up number of the centre's country: Spanish mobiles, else the US range kept for fiction (555-01xx)."""
    return f"612 {i % 1_000_000:06d}" if country == "ES" else f"202-555-01{i % 100:02d}"


def _demo_patient(rng, i, centre, centre_cfg, mrn, mix, cfg, today) -> int:
    first, last = cfg["infusion_years"]
    start = dt.date(first, 1, 1)
    end = min(dt.date(last, 12, 31), today - dt.timedelta(days=1))
    infusion_date = start + dt.timedelta(days=rng.randrange((end - start).days))
    age = cfg["age_at_infusion"]
    years = int(min(max(rng.gauss(age["mean"], age["sd"]), age["min"]), age["max"]))
    birth_date = infusion_date - dt.timedelta(days=years * 365 + rng.randrange(365))
    spanish = rng.random() < centre_cfg.get("spanish_speakers", 0.0)
    given, family = rng.choice(cfg["given_names"]), rng.choice(cfg["family_names"])
    patient = Patient.objects.create(
        centre=centre,
        mrn=mrn,
        given_name=given,
        family_name=family,
        birth_date=birth_date,
        sex=rng.choice(["female", "male"]),
        email=f"{given.lower()}.{family.lower()}.{i}@patients.example.org",
        phone=contact_details.phone_normalise(_demo_number(centre.country, i), centre.country),
        # every fifth patient asked for SMS reminders: `make run` writes some SMS under var/sms/ too
        sms_consent=i % 5 == 0,
        preferred_channel="sms" if i % 5 == 0 else "email",
        preferred_language="es" if spanish else "en",
    )
    product = rng.choices([p for p, _ in mix], weights=[w for _, w in mix])[0]
    infusion = Infusion(
        patient=patient,
        product=product,
        infusion_date=infusion_date,
        indication="Relapsed/refractory disease per label",
        lot_number=f"LOT{rng.randrange(10**6):06d}",
        prior_lines=rng.randint(cfg["prior_lines"]["min"], cfg["prior_lines"]["max"]),
    )
    flags = [
        FlagFacts(
            code=code,
            present=True,
            source=FlagSource.NGS_REPORT if code == "clonal_haematopoiesis" else FlagSource.TREATMENT_HISTORY,
            detail="DNMT3A VAF 4%" if code == "clonal_haematopoiesis" else "",
            observed_on=infusion_date - dt.timedelta(days=14),
        )
        for code, share in cfg["risk_flags"].items()
        if rng.random() < share
    ]
    infusions.infusion_record(infusion, reason="demo cohort", risk_flags=flags)
    closure = _pick_closure(rng, infusion_date, cfg, today)
    _fill_history(rng, infusion, cfg, closure[1] if closure else today)
    events = _second_cancer(rng, infusion, cfg, closure[1] if closure else today)
    if closure:
        _close(patient, *closure)
    return events


def _fill_history(rng, infusion: Infusion, cfg: dict, until: dt.date) -> None:
    """Visits whose window closed before today were planned after the fact (unrecorded); record them as the clinic
    did. Those after ``until`` (the day follow-up closed) are left to the closure.
    """
    past = FollowUpVisit.objects.filter(infusion=infusion, status=VisitStatus.UNRECORDED, window_end__lt=until)
    completed, missed = [], []
    for visit in past:
        if visit.kind in ("infusion", "acute", "baseline") or rng.random() < cfg["visit_completion"]:
            early = min(3, (visit.due_date - visit.window_start).days)
            late = min(5, (visit.window_end - visit.due_date).days)
            offset = rng.randint(-early, late)
            visit.status, visit.status_reason = VisitStatus.COMPLETED, ""
            visit.completed_on = visit.due_date + dt.timedelta(days=offset)
            completed.append(visit)
        else:
            visit.status, visit.status_reason = VisitStatus.MISSED, "Not attended"
            missed.append(visit)
    FollowUpVisit.objects.bulk_update(completed + missed, ["status", "status_reason", "completed_on"], batch_size=500)


def _second_cancer(rng, infusion: Infusion, cfg: dict, today: dt.date) -> int:
    """A constant hazard calibrated so that ~6.5% have a second cancer by year 3."""
    hazard = -math.log(1 - cfg["second_cancer"]["by_year_3"]) / (3 * 365)
    followed = (today - infusion.infusion_date).days
    onset = int(rng.expovariate(hazard))
    if onset >= followed:
        return 0
    mix = cfg["second_cancer"]["mix"]
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    low, high = ONSET_DAYS[kind]
    day = min(max(onset, low), high, followed - 1)
    reporting.malignancy_event_record(
        infusion, diagnosis_date=infusion.infusion_date + dt.timedelta(days=day), malignancy_type=kind
    )
    return 1


def _pick_closure(rng, infusion_date: dt.date, cfg: dict, today: dt.date) -> tuple[str, dt.date] | None:
    roll, total = rng.random(), 0.0
    for status, share in cfg["status"].items():
        total += share
        if roll < total:
            span = max((today - infusion_date).days, 2)
            return status, infusion_date + dt.timedelta(days=rng.randrange(1, span))
    return None


def _close(patient: Patient, status: str, on: dt.date) -> None:
    if status == PatientStatus.LOST:
        Patient.objects.filter(pk=patient.pk).update(
            status=status,
            status_date=on,
            status_reason="No contact after tracing",
            ladder_stage=LadderStage.LOST,
        )
    else:
        lifecycle.patient_close(patient, status=status, on=on, reason="Recorded in demo history")
