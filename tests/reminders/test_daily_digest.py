"""The care team hears of open windows in one digest a morning per centre, not one email per visit: a cohort
imported at once, or a catch-up after downtime, is one email; a second run sends nothing; stale notices are
skipped with their reason; escalations (overdue, missed) still go out at once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from surveillance.imports.ehr_import import ndjson_import
from surveillance.models import Delivery, Reminder, ReminderStatus
from surveillance.models.reminders import DIGEST_PURPOSES, Audience, CareTeamDailyDigest, DeliveryOutcome, Purpose
from surveillance.reminders import digests, dispatch
from tests.imports.conftest import cohort_ndjson
from tests.reminders.conftest import add_reminder

pytestmark = pytest.mark.django_db
UTC = dt.UTC
TEAM_A = "team-a@example.org"


def _window_open(visit, at: dt.datetime) -> Reminder:
    return add_reminder(visit, at, audience=Audience.CARE_TEAM, purpose=Purpose.WINDOW_OPEN, days_before=0)


def _next_morning(now: dt.datetime, tz) -> dt.datetime:
    """07:30 in ``tz`` on the first day whose 07:30 is not before ``now``."""
    local = now.astimezone(tz)
    morning = dt.datetime.combine(local.date(), dt.time(7, 30), tzinfo=tz)
    return morning if morning >= local else morning + dt.timedelta(days=1)


def test_it_sends_the_care_team_one_digest_after_a_cohort_is_imported(smtp_settings, centre_a):
    now = timezone.now()
    ndjson_import(cohort_ndjson(120).splitlines(), centre_a)
    notices = Reminder.objects.filter(audience=Audience.CARE_TEAM, purpose=Purpose.WINDOW_OPEN)
    morning = _next_morning(now, centre_a.tz)
    day = morning.astimezone(centre_a.tz).date()
    tomorrow = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=centre_a.tz)
    waiting = list(notices.filter(send_after__lt=tomorrow).select_related("visit"))
    stale = {r.pk for r in waiting if day > r.visit.due_date or (day - r.visit.window_start).days > 7}
    fresh = {r.pk for r in waiting} - stale
    assert len(waiting) > 20 and stale and fresh, "the cohort should open dozens of windows, old and new"

    dispatch.dispatch_run(now)  # the import's catch-ups: the dispatcher leaves the care team's notices alone
    dispatch.dispatch_run(morning)
    assert smtp_settings.to(TEAM_A) == []

    result = digests.daily_digests_send(morning)
    assert (result.sent, result.listed, result.skipped) == (1, len(fresh), len(stale))
    [digest] = smtp_settings.to(TEAM_A)
    subject = digest["Subject"]
    assert subject == f"Follow-up windows opened: Centre A, {day:%d %b %Y}"
    body = digest.get_body(("plain",)).get_content()
    assert f"Visits whose window opened since the last digest: {len(fresh)}" in body
    assert "Doe" not in body and "PAT0" not in body and "Doe" not in subject
    listed = Reminder.objects.filter(pk__in=fresh)
    assert {r.status for r in listed} == {ReminderStatus.SENT}
    assert {r.message_id for r in listed} == {digest["Message-ID"]}
    for reminder in listed.select_related("visit")[:5]:
        assert f"/admin/surveillance/followupvisit/{reminder.visit_id}/change/" in body
    skipped = Reminder.objects.filter(pk__in=stale)
    assert {r.status for r in skipped} == {ReminderStatus.SKIPPED}
    assert all(r.outcome_reason.startswith("stale: ") for r in skipped)

    # a second beat, a re-run, the dispatcher: nothing more reaches the care team
    assert digests.daily_digests_send(morning + dt.timedelta(minutes=5)).sent == 0
    assert digests.daily_digests_send(morning + dt.timedelta(hours=3)).sent == 0
    dispatch.dispatch_run(morning + dt.timedelta(hours=3))
    # escalations stay immediate (an overdue visit of the cohort may fall due by then): only they may follow
    after = [m for m in smtp_settings.to(TEAM_A) if m["Message-ID"] != digest["Message-ID"]]
    escalated = Reminder.objects.filter(pk__in=[int(m["X-CARTWatch-Reminder"]) for m in after])
    assert len(after) == escalated.count()
    assert not escalated.filter(purpose__in=DIGEST_PURPOSES).exists()
    assert CareTeamDailyDigest.objects.get(centre=centre_a, day=day).listed == len(fresh)


def test_it_skips_stale_window_open_notices_with_their_reason(smtp_settings, centre_a, make_patient, open_visit):
    morning = dt.datetime(2026, 11, 2, 13, tzinfo=UTC)  # 08:00 in New York
    day = dt.date(2026, 11, 2)
    patient = make_patient(centre_a)
    fresh = _window_open(open_visit(patient, day + dt.timedelta(days=8), occurrence=900), morning)  # opened 2 d ago
    old = _window_open(open_visit(patient, day, occurrence=901), morning)  # opened 10 days ago
    overdue = _window_open(open_visit(patient, day - dt.timedelta(days=6), occurrence=902), morning)  # due yesterday

    result = digests.daily_digests_send(morning)

    assert (result.sent, result.listed, result.skipped) == (1, 1, 2)
    for reminder in (fresh, old, overdue):
        reminder.refresh_from_db()
    assert fresh.status == ReminderStatus.SENT
    assert (old.status, old.outcome_reason) == (ReminderStatus.SKIPPED, "stale: the window opened 10 days ago")
    assert (overdue.status, overdue.outcome_reason) == (ReminderStatus.SKIPPED, "stale: the visit is already overdue")
    assert Delivery.objects.get(reminder=old).outcome == DeliveryOutcome.SKIPPED
    body = smtp_settings.to(TEAM_A)[0].get_body(("plain",)).get_content()
    assert f"visit {fresh.visit_id}, patient {patient.pk}" in body and f"visit {old.visit_id}," not in body
    assert "Notices left out because their window opened too long ago or the visit is already overdue: 2" in body
    assert patient.family_name not in body and patient.mrn not in body


def test_it_follows_the_setting_for_how_old_a_window_may_be(
    settings, smtp_settings, centre_a, make_patient, open_visit
):
    settings.CARTWATCH = {**settings.CARTWATCH, "WINDOW_OPEN_NOTICE_MAX_DAYS": 14}
    morning = dt.datetime(2026, 11, 2, 13, tzinfo=UTC)
    notice = _window_open(open_visit(make_patient(centre_a), dt.date(2026, 11, 2)), morning)  # opened 10 days ago
    assert digests.daily_digests_send(morning).listed == 1
    notice.refresh_from_db()
    assert notice.status == ReminderStatus.SENT


def test_it_waits_for_the_centres_morning_and_sends_each_day_once(
    smtp_settings, centre_a, centre_b, make_patient, open_visit
):
    day = dt.date(2026, 11, 2)
    early = dt.datetime(2026, 11, 2, 11, 30, tzinfo=UTC)  # 06:30 in New York, 12:30 in Madrid
    visit = open_visit(make_patient(centre_a), day + dt.timedelta(days=10))  # window opens today
    first = _window_open(visit, dt.datetime(2026, 11, 2, 14, tzinfo=UTC))  # planned for 09:00 New York today

    assert digests.daily_digests_send(early).sent == 0  # Madrid's morning came, with nothing to tell
    assert CareTeamDailyDigest.objects.get(centre=centre_b, day=day).settled_at == early
    at_seven = early + dt.timedelta(minutes=35)  # 07:05 in New York: the day's notices go out
    assert digests.daily_digests_send(at_seven).sent == 1
    first.refresh_from_db()
    assert first.status == ReminderStatus.SENT

    # a notice planned later that day waits for the next morning's digest rather than going out alone
    later = _window_open(
        open_visit(make_patient(centre_a), day + dt.timedelta(days=10), occurrence=901),
        at_seven + dt.timedelta(hours=3),
    )
    assert digests.daily_digests_send(at_seven + dt.timedelta(hours=4)).sent == 0
    assert digests.daily_digests_send(at_seven + dt.timedelta(days=1)).sent == 1
    later.refresh_from_db()
    assert later.status == ReminderStatus.SENT
    assert len(smtp_settings.to(TEAM_A)) == 2
    assert smtp_settings.to(TEAM_A)[0]["Message-ID"] != smtp_settings.to(TEAM_A)[1]["Message-ID"]


def test_it_keeps_escalations_immediate(smtp_settings, centre_a, make_patient, open_visit):
    now = dt.datetime(2026, 11, 2, 14, tzinfo=UTC)
    patient = make_patient(centre_a)
    notice = _window_open(open_visit(patient, now.date(), occurrence=900), now)
    overdue = add_reminder(
        open_visit(patient, now.date(), occurrence=901), now, audience=Audience.CARE_TEAM, purpose=Purpose.OVERDUE
    )
    dispatch.dispatch_run(now)
    [escalation] = smtp_settings.to(TEAM_A)
    assert escalation["X-CARTWatch-Reminder"] == str(overdue.pk)
    notice.refresh_from_db()
    assert notice.status == ReminderStatus.PENDING  # waiting for tomorrow's digest, not for the dispatcher


def test_it_gives_the_notices_back_when_the_mail_server_refuses(smtp_settings, centre_a, make_patient, open_visit):
    morning = dt.datetime(2026, 11, 2, 13, tzinfo=UTC)
    notice = _window_open(open_visit(make_patient(centre_a), dt.date(2026, 11, 8)), morning)
    smtp_settings.answers.append("451 4.3.0 try again later")
    with pytest.raises(Exception, match="try again later"):
        digests.daily_digests_send(morning)
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == (ReminderStatus.PENDING, 0)
    assert CareTeamDailyDigest.objects.get(centre=centre_a).last_error

    assert digests.daily_digests_send(morning + dt.timedelta(minutes=1)).sent == 1  # the task's retry
    notice.refresh_from_db()
    assert notice.status == ReminderStatus.SENT and len(smtp_settings.to(TEAM_A)) == 1
