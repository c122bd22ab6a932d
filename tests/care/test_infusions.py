"""Recording and correcting an infusion (``care.infusions``): the checks against the patient's record, written once,
and one order for saving, superseding and planning."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.care import infusions, lifecycle
from surveillance.care.risk_flags import FlagFacts
from surveillance.models import CarTProduct, FollowUpVisit, Infusion, VisitStatus
from surveillance.models.patients import FlagSource

DAY = dt.timedelta(days=1)


def new_infusion(patient, infusion_date: dt.date, product: str = "yescarta") -> Infusion:
    return Infusion(patient=patient, product=CarTProduct.objects.get(code=product), infusion_date=infusion_date)


@pytest.fixture
def today(centre_a) -> dt.date:
    return timezone.localdate(timezone.now(), centre_a.tz)


def test_it_refuses_an_infusion_before_the_birth_date(centre_a, make_patient, today):
    patient = make_patient(centre_a, birth_date=today - 30 * DAY)
    with pytest.raises(infusions.InfusionRefused) as caught:
        infusions.infusion_record(new_infusion(patient, today - 40 * DAY), reason="test")
    assert caught.value.field_name == "infusion_date"
    assert str(patient.birth_date) not in caught.value.message  # the birth date is not echoed
    assert not Infusion.objects.exists()


def test_it_refuses_an_infusion_after_the_recorded_death(centre_a, make_patient, today):
    patient = make_patient(centre_a)
    lifecycle.patient_close(patient, status="deceased", on=today - 50 * DAY, reason="Died")
    with pytest.raises(infusions.InfusionRefused) as caught:
        infusions.infusion_record(new_infusion(patient, today - 10 * DAY), reason="test")
    assert (caught.value.field_name, caught.value.message) == (
        "infusion_date",
        "is after the patient's recorded date of death",
    )
    assert not Infusion.objects.exists() and not FollowUpVisit.objects.exists()


def test_it_refuses_a_new_infusion_for_a_closed_patient(centre_a, make_patient, today):
    patient = make_patient(centre_a)
    lifecycle.patient_close(patient, status="withdrawn", on=today - 5 * DAY, reason="Withdrew consent")
    with pytest.raises(infusions.InfusionRefused) as caught:
        infusions.infusion_record(new_infusion(patient, today - 10 * DAY), reason="test")
    assert caught.value.field_name == "patient" and "withdrawn" in caught.value.message
    assert not Infusion.objects.exists()


def test_it_records_the_flags_before_planning_so_they_choose_the_protocol(centre_a, make_patient, today):
    infusion = new_infusion(make_patient(centre_a), today - 10 * DAY)
    flag = FlagFacts(
        code="clonal_haematopoiesis", present=True, source=FlagSource.NGS_REPORT, observed_on=today - 20 * DAY
    )
    diff = infusions.infusion_record(infusion, reason="test", risk_flags=[flag])
    assert diff.added and infusion.protocol.variant == "intensified"
    stored = infusion.risk_flags.get()
    assert (stored.code, stored.present, stored.source, stored.observed_on) == (
        flag.code,
        flag.present,
        flag.source,
        flag.observed_on,
    )


def test_it_supersedes_earlier_infusions_and_an_older_one_entered_late(centre_a, make_patient, today):
    patient = make_patient(centre_a)
    first = new_infusion(patient, today - 400 * DAY)
    infusions.infusion_record(first, reason="test")
    second = new_infusion(patient, today - 30 * DAY, product="kymriah")
    infusions.infusion_record(second, reason="re-infusion")
    first.refresh_from_db()
    assert first.superseded_by == second
    assert not first.visits.filter(status__in=(VisitStatus.SCHEDULED, VisitStatus.UNRECORDED)).exists()
    older = new_infusion(patient, today - 700 * DAY)  # entered after the others, from paper records
    diff = infusions.infusion_record(older, reason="history")
    assert older.superseded_by == second and not diff.added and not older.visits.exists()


def test_it_corrects_the_date_and_replans_but_refuses_one_after_death(centre_a, make_patient, today):
    patient = make_patient(centre_a)
    infusion = new_infusion(patient, today - 60 * DAY)
    infusions.infusion_record(infusion, reason="test")
    diff = infusions.infusion_correct(infusion, infusion_date=today - 58 * DAY, reason="typo")
    assert diff.moved and Infusion.objects.get().infusion_date == today - 58 * DAY
    assert infusions.infusion_correct(infusion, lot_number="L-7", reason="lot") is None  # nothing to re-plan

    lifecycle.patient_close(patient, status="deceased", on=today - 20 * DAY, reason="Died")
    with pytest.raises(infusions.InfusionRefused) as caught:
        infusions.infusion_correct(infusion, infusion_date=today - 10 * DAY, reason="typo")
    assert caught.value.field_name == "infusion_date"
    assert Infusion.objects.get().infusion_date == today - 58 * DAY


def test_it_cancels_the_visits_after_a_death_recorded_later(centre_a, make_patient, today):
    patient = make_patient(centre_a)
    infusion = new_infusion(patient, today - 200 * DAY)
    infusions.infusion_record(infusion, reason="test")
    before_death = infusion.visits.filter(status=VisitStatus.UNRECORDED, window_end__lt=today - 150 * DAY)
    kept = set(before_death.values_list("pk", flat=True))
    assert kept
    lifecycle.patient_close(patient, status="deceased", on=today - 150 * DAY, reason="Died")
    assert not infusion.visits.filter(status=VisitStatus.SCHEDULED).exists()
    assert set(infusion.visits.filter(status=VisitStatus.UNRECORDED).values_list("pk", flat=True)) == kept
    after_death = infusion.visits.filter(window_start__gt=today - 150 * DAY)
    assert after_death.exists() and set(after_death.values_list("status", flat=True)) == {VisitStatus.CANCELLED}
