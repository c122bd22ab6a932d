"""No patient data in the subjects and logs of the care team's digests: the daily digest lists the sentinel's
fresh window-open notice and skips a stale one (its first send refused by the relay, then sent), and the weekly
digest lists the sentinel's reminder that the relay refused with an answer quoting the address and the name."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.models import ReminderStatus
from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import digests, dispatch, sweep
from surveillance.reminders.digests import DIGEST_LOCAL_HOUR
from tests.phi.sentinel import EMAIL, FAMILY, GIVEN, leaks, subjects
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db


def next_morning(now: dt.datetime, tz) -> dt.datetime:
    """Half past the digest hour in ``tz``, on the first day when that is not before ``now``."""
    local = now.astimezone(tz)
    morning = dt.datetime.combine(local.date(), dt.time(DIGEST_LOCAL_HOUR, 30), tzinfo=tz)
    return morning if morning >= local else morning + dt.timedelta(days=1)


def test_it_keeps_patient_data_out_of_the_care_teams_digests(captured, sentinel, open_visit, smtp_settings):
    centre = sentinel.centre
    now = timezone.now()
    morning = next_morning(now, centre.tz)
    day = morning.astimezone(centre.tz).date()
    notice = {"audience": Audience.CARE_TEAM, "purpose": Purpose.WINDOW_OPEN, "days_before": 0}
    fresh = add_reminder(open_visit(sentinel, day + dt.timedelta(days=8), occurrence=900), now, **notice)
    stale = add_reminder(open_visit(sentinel, day - dt.timedelta(days=9), occurrence=901), now, **notice)

    refused = add_reminder(open_visit(sentinel, timezone.localdate(now, centre.tz), occurrence=902), now)
    smtp_settings.answers.append(f"550 5.1.1 <{EMAIL}>: no such user ({GIVEN} {FAMILY})")
    dispatch.dispatch_run(now)
    refused.refresh_from_db()
    assert refused.status == ReminderStatus.FAILED, refused.last_error

    smtp_settings.answers.append(f"451 4.3.0 try again later ({GIVEN} {FAMILY})")
    with pytest.raises(Exception, match="try again later"):
        digests.daily_digests_send(morning)
    assert digests.daily_digests_send(morning + dt.timedelta(minutes=1)).sent == 1
    fresh.refresh_from_db()
    stale.refresh_from_db()
    assert (fresh.status, stale.status) == (ReminderStatus.SENT, ReminderStatus.SKIPPED)
    assert sweep.care_team_digest_send(morning + dt.timedelta(days=7)) == 1

    assert len(smtp_settings.to(centre.care_team_email)) == 2, "a digest did not go out"
    assert not leaks([*captured.found(), *subjects(smtp_settings)])
