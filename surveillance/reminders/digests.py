"""The care team's daily digest: the visits whose window opened, in one email a morning per centre.

A care team that hears of every open window in its own email stops reading them: importing a cohort, or a catch-up
after downtime, would send dozens at once. So window-open notices (``DIGEST_PURPOSES``) are planned as outbox rows
like every reminder, but the dispatcher leaves them alone (``ReminderQuerySet.due``): at 07:00 on the centre's own
day (``DIGEST_LOCAL_HOUR``; the task runs hourly) the centre's digest claims the notices whose moment falls on or
before that day, re-checks each as the dispatcher would, skips the stale ones with their reason
(``window_open_stale_reason``), and lists the rest in one email: counts by kind and links to the visits and the
worklists, patients by id only, nothing clinical in the subject. Escalations (overdue and missed visits,
second-cancer signals) stay immediate emails.

Never twice: the (centre, day) row is claimed first (a unique key, then compare-and-set), so a second beat or a
re-run sends nothing; the notices themselves are claimed by compare-and-set with a lease, as the dispatcher claims
its rows. A day with nothing to tell is settled without an email: a notice planned later that day waits for the
next morning's digest rather than going out alone. The weekly digest (``sweep.care_team_digest_send``) claims its
(centre, week) row with the same ``digest_claim``.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.db import IntegrityError, models, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from surveillance.admin.worklists import WORKLISTS_BY_KEY
from surveillance.db.outbox_loop import worker_id
from surveillance.models import Delivery, FollowUpVisit, Reminder, ReminderStatus, TreatmentCentre
from surveillance.models.protocols import VisitKind
from surveillance.models.reminders import CareTeamDailyDigest, DeliveryOutcome
from surveillance.reminders import dispatch, messages

logger = logging.getLogger("surveillance.reminders.digests")

#: Digests go out from this hour of the centre's own day (the tasks run every hour).
DIGEST_LOCAL_HOUR = 7
#: A digest claimed this long ago and still unsettled is taken over by the next run.
DIGEST_CLAIM = dt.timedelta(minutes=10)
#: Visits listed one by one in a daily digest; the rest are counted, and the worklist lists them all.
LISTED_VISITS = 100


@dataclass
class DailyDigestResult:
    sent: int = 0
    listed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def digest_claim(model: type[models.Model], now: dt.datetime, *, done_field: str, **key) -> models.Model | None:
    """Claim the digest row ``key`` (a centre and its period) for this run; None when it is done or someone else
    holds it.

    The row is created first (its unique key lets one run win); a row whose claimant neither finished nor said it
    failed is taken over after ``DIGEST_CLAIM`` (its worker died), one whose claimant recorded an error at once.
    Every takeover is a compare-and-set on ``claimed_at``, so two runs never both win.
    """
    try:
        with transaction.atomic():
            return model.objects.create(claimed_at=now, **key)
    except IntegrityError:
        pass
    digest = model.objects.get(**key)
    if getattr(digest, done_field) is not None:
        return None
    unfinished = model.objects.filter(pk=digest.pk, claimed_at=digest.claimed_at, **{f"{done_field}__isnull": True})
    won = unfinished.filter(claimed_at__lt=now - DIGEST_CLAIM).update(claimed_at=now)
    if not won and digest.last_error:
        won = unfinished.update(claimed_at=now, last_error="")  # the last claimant failed and said so
    return digest if won else None


def window_open_stale_reason(visit: FollowUpVisit, today: dt.date) -> str:
    """Why "the window is open" is no longer news on ``today`` (the centre's date); "" while it is.

    A notice listed late (planned after the window opened, or waiting out a downtime) is still worth a line while
    the window opened at most ``WINDOW_OPEN_NOTICE_MAX_DAYS`` ago and the visit is not yet due. Past that, or once
    the visit is overdue, the worklists (and, for an overdue visit, its escalation) already say it better.
    """
    if today > visit.due_date:
        return "stale: the visit is already overdue"
    opened = (today - visit.window_start).days
    if opened > settings.CARTWATCH["WINDOW_OPEN_NOTICE_MAX_DAYS"]:
        return f"stale: the window opened {opened} days ago"
    return ""


def daily_digests_send(now: dt.datetime | None = None) -> DailyDigestResult:
    """Send today's digest of every centre whose morning has come and that has not had it.

    A mail error is recorded on the day's row and raised (the task retries); its notices go back to waiting.
    """
    now = now or timezone.now()
    result = DailyDigestResult()
    connection = None
    try:
        for centre in TreatmentCentre.objects.order_by("pk"):
            local = now.astimezone(centre.tz)
            if local.hour < DIGEST_LOCAL_HOUR:
                continue  # today's digest waits for the centre's morning, not UTC's
            digest = digest_claim(CareTeamDailyDigest, now, done_field="settled_at", centre=centre, day=local.date())
            if digest is None:
                continue
            if connection is None:
                connection = get_connection(fail_silently=False)
            _centre_digest_send(centre, digest, now, connection, result)
    finally:
        if connection is not None:
            connection.close()
    return result


def _centre_digest_send(
    centre: TreatmentCentre, digest: CareTeamDailyDigest, now: dt.datetime, connection, result: DailyDigestResult
) -> None:
    """Claim the centre's notices of the day, skip what no longer applies, send the rest in one email."""
    token = f"digest:{worker_id()}:{secrets.token_hex(4)}"[:64]
    tomorrow = dt.datetime.combine(digest.day + dt.timedelta(days=1), dt.time(), tzinfo=centre.tz)
    notices = _notices_claim(centre, tomorrow, now, token)
    listed: list[Reminder] = []
    skipped: dict[str, list[Reminder]] = defaultdict(list)
    for reminder in notices:
        reason = dispatch.reminder_skip_reason(reminder, now) or window_open_stale_reason(reminder.visit, digest.day)
        if reason:
            skipped[reason].append(reminder)
        else:
            listed.append(reminder)
    skipped_count = sum(len(rows) for rows in skipped.values())
    with transaction.atomic():
        for reason, rows in skipped.items():
            _notices_settle(rows, token, now, ReminderStatus.SKIPPED, DeliveryOutcome.SKIPPED, reason=reason)
    message_id = ""
    if listed:
        message_id = messages.message_id_for(f"daily-digest:{centre.pk}:{digest.day.isoformat()}")
        email = daily_digest_message(centre, digest.day, listed, skipped_count, message_id, connection)
        try:
            email.send()
        except Exception as exc:
            with transaction.atomic():
                _notices_release(listed, token, now)
                CareTeamDailyDigest.objects.filter(pk=digest.pk).update(last_error=type(exc).__name__)
            raise
    with transaction.atomic():
        _notices_settle(listed, token, now, ReminderStatus.SENT, DeliveryOutcome.SENT, message_id=message_id)
        CareTeamDailyDigest.objects.filter(pk=digest.pk).update(
            settled_at=now,
            sent_at=now if listed else None,
            message_id=message_id,
            listed=len(listed),
            skipped=skipped_count,
            last_error="",
        )
    logger.info("daily digest centre=%s day=%s listed=%s skipped=%s", centre.pk, digest.day, len(listed), skipped_count)
    result.sent += bool(listed)
    result.listed += len(listed)
    result.skipped += skipped_count


def _notices_claim(centre: TreatmentCentre, before: dt.datetime, now: dt.datetime, token: str) -> list[Reminder]:
    """The centre's waiting notices whose moment comes before ``before``, claimed for ``token`` with a lease (a
    worker that dies leaves them to the dispatcher's lease recovery, which puts them back to waiting)."""
    ids = list(
        Reminder.objects.digest_due(before).filter(visit__infusion__patient__centre=centre).values_list("pk", flat=True)
    )
    if not ids:
        return []
    lease = now + dt.timedelta(seconds=settings.CARTWATCH["REMINDER_LEASE_SECONDS"])
    Reminder.objects.filter(pk__in=ids).claim(token, lease, now)
    return list(
        Reminder.objects.filter(pk__in=ids, status=ReminderStatus.SENDING, claimed_by=token)
        .select_related("visit__infusion__patient__centre")
        .only(*messages.MESSAGE_FIELDS, "visit__kind")  # the digest counts the visits by kind
        .order_by("visit__due_date", "pk")
    )


def _notices_settle(
    rows: list[Reminder],
    token: str,
    now: dt.datetime,
    status: str,
    outcome: str,
    *,
    reason: str = "",
    message_id: str = "",
) -> None:
    """Record how claimed notices ended (listed in the digest, or skipped with ``reason``), with a delivery each."""
    if not rows:
        return
    values: dict = {"status": status, "outcome_reason": reason[:255], "lease_expires_at": None, "claimed_by": ""}
    if status == ReminderStatus.SENT:
        values.update(sent_at=now, message_id=message_id, last_smtp_code=250, last_error="")
    won = set(
        Reminder.objects.select_for_update()
        .filter(pk__in=[r.pk for r in rows], status=ReminderStatus.SENDING, claimed_by=token)
        .values_list("pk", flat=True)
    )
    Reminder.objects.filter(pk__in=won).update(updated_at=now, **values)
    Delivery.objects.bulk_create(
        Delivery(
            reminder=r,
            attempt=r.attempts,
            outcome=outcome,
            smtp_code=250 if status == ReminderStatus.SENT else None,
            worker=token,
            message_id=message_id,
            error=reason[:500],
        )
        for r in rows
        if r.pk in won
    )


def _notices_release(rows: list[Reminder], token: str, now: dt.datetime) -> None:
    """Give claimed notices back to wait for the next try, the attempt not counted."""
    Reminder.objects.filter(pk__in=[r.pk for r in rows], status=ReminderStatus.SENDING, claimed_by=token).update(
        status=ReminderStatus.PENDING,
        attempts=F("attempts") - 1,
        lease_expires_at=None,
        claimed_by="",
        updated_at=now,
    )


def daily_digest_context(centre: TreatmentCentre, day: dt.date, listed: list[Reminder], skipped: int) -> dict:
    """What the email says: counts by kind, each visit by id with its due date and link, the worklists. No names,
    no MRNs, nothing clinical beside a patient."""
    kinds = Counter(reminder.visit.kind for reminder in listed)
    return {
        "centre": centre,
        "day": day,
        "count": len(listed),
        "by_kind": [(VisitKind(kind).label, n) for kind, n in sorted(kinds.items())],
        "visits": [
            {
                "id": r.visit_id,
                "patient_id": r.visit.infusion.patient_id,
                "due_date": r.visit.due_date,
                "url": messages.site_url(reverse("admin:surveillance_followupvisit_change", args=[r.visit_id])),
            }
            for r in listed[:LISTED_VISITS]
        ],
        "more": max(len(listed) - LISTED_VISITS, 0),
        "skipped": skipped,
        "window_open_url": messages.site_url(WORKLISTS_BY_KEY["window_open"].url()),
        "overdue_url": messages.site_url(WORKLISTS_BY_KEY["overdue"].url()),
    }


def daily_digest_message(
    centre: TreatmentCentre, day: dt.date, listed: list[Reminder], skipped: int, message_id: str, connection
) -> messages.CleanSubjectEmail:
    """The daily digest email; the subject names the centre and the day only."""
    context = daily_digest_context(centre, day, listed, skipped)
    message = messages.CleanSubjectEmail(
        subject=f"Follow-up windows opened: {centre.name}, {day:%d %b %Y}",
        body=render_to_string("surveillance/email/daily_digest.en.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[centre.care_team_email],
        connection=connection,
        headers={"Message-ID": message_id, "Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string("surveillance/email/daily_digest.en.html", context), "text/html")
    return message
