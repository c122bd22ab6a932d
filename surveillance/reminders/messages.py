"""What a reminder says: the email (plain text and HTML, in the patient's language), its calendar entry, and the
signed links in it.

Minimum necessary: a patient email names the centre, the date and what to bring; never a diagnosis, a product or
an MRN, and nothing clinical in any subject line. Care-team emails identify the patient by the service's own id
and link to the admin, where access is scoped and audited.

The Message-ID is derived from the reminder's idempotency key, so a re-send after a crash carries the same id and
a mail system (or a person) can recognise the duplicate.
"""

from __future__ import annotations

import datetime as dt
import email.message
import functools
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, parseaddr
from html import escape as escape_html

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.message import sanitize_address
from django.template.loader import select_template
from django.urls import reverse
from django.utils import formats, translation
from django.utils.encoding import force_bytes
from django.utils.translation import gettext_lazy as _

from surveillance.models import FollowUpVisit, Patient, Reminder, TreatmentCentre
from surveillance.models.reminders import Audience, Purpose
from surveillance.models.visits import RequestKind
from surveillance.reminders import mime
from surveillance.reminders.smtp_envelope import PLAIN_ADDRESS

LANGUAGES = ("en", "es")
#: All that a reminder's message, its fingerprint and the dispatcher's re-check read of the reminder and the rows
#: above it (the centre is read on its own: ``centres_attach``), and all that the dispatcher loads of them: minimum
#: necessary (never a name, an MRN, a birth date or the visit's clinical content), and a quarter of the columns, so
#: a batch is built in less time. A field read that is not listed would cost a query per reminder:
#: ``tests/reminders/test_dispatch_queries.py`` holds a batch to the same reads whatever its size.
MESSAGE_FIELDS = (
    *("audience", "purpose", "days_before", "channel", "idempotency_key", "sequence", "send_after", "attempts"),
    *("next_attempt_at", "message_id", "fallback_of"),
    *(f"visit__{name}" for name in ("rule_code", "occurrence", "label", "status", "sequence", "due_date")),
    *(f"visit__{name}" for name in ("window_start", "window_end", "booked_for", "booked_start", "booked_end")),
    *(f"visit__infusion__patient__{name}" for name in ("centre", "email", "phone", "preferred_language")),
    *(f"visit__infusion__patient__{name}" for name in ("time_zone", "contact_consent", "sms_consent")),
    *(f"visit__infusion__patient__{name}" for name in ("preferred_channel", "reminders_opted_out_at", "status")),
    "visit__infusion__patient__ladder_stage",
)
LINK_SALT = "surveillance.visit-link"
UNSUBSCRIBE_SALT = "surveillance.unsubscribe"

#: Subjects carry the date and nothing clinical.
PATIENT_SUBJECTS = {
    "en": {
        Purpose.UPCOMING: "Reminder: your follow-up visit on {date}",
        Purpose.MOVED: "Your follow-up visit has moved to {date}",
        Purpose.CANCELLED: "Your follow-up visit on {date} is cancelled",
    },
    "es": {
        Purpose.UPCOMING: "Recordatorio: su visita de seguimiento el {date}",
        Purpose.MOVED: "Su visita de seguimiento ha cambiado al {date}",
        Purpose.CANCELLED: "Su visita de seguimiento del {date} se ha cancelado",
    },
}
#: Care-team subjects, in the centre's language (``centre_language``).
CARE_TEAM_SUBJECTS = {
    Purpose.WINDOW_OPEN: _("Visit window open: patient {patient_id}"),
    Purpose.OVERDUE: _("Overdue visit: patient {patient_id}"),
    Purpose.MISSED: _("Missed visit: patient {patient_id}"),
}
DIGEST_SUBJECT = _("Weekly follow-up digest: {centre}, week of {week}")
CALENDAR_SUMMARY = {"en": "Follow-up visit at {centre}", "es": "Visita de seguimiento en {centre}"}


def message_id_for(key: str) -> str:
    """Deterministic Message-ID: the same reminder always carries the same id, whichever worker sends it."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@cartwatch>"


def patient_language(patient: Patient) -> str:
    return patient.preferred_language if patient.preferred_language in LANGUAGES else "en"


def centre_language(centre) -> str:
    """The care team's language: its emails and weekly digest are written in it."""
    return centre.language if centre.language in LANGUAGES else "en"


# --- signed links -----------------------------------------------------------------------------------------------
def site_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


@functools.lru_cache(maxsize=8)
def _link_mac(salt: str, secret: str) -> hmac.HMAC:
    """The HMAC Django's ``TimestampSigner(salt=salt)`` signs with, its key derived once per process (``signing``
    derives it again for every token, four a reminder)."""
    key = hashlib.sha256(force_bytes(salt + "signer") + force_bytes(secret)).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


#: A token's time stamp, written once a second rather than once a token.
_timestamp = functools.lru_cache(maxsize=4)(signing.b62_encode)


def _signed(data: dict, salt: str) -> str:
    """The token ``signing.dumps(data, salt=salt, compress=True)`` writes (``signing.loads`` reads it), written
    here in a few steps: Django's JSON, base64, time stamp and HMAC, without its signer objects and without trying
    zlib (a link's few bytes never shrink, and Django keeps the compressed form only when it is shorter). Each
    message signs four of them."""
    payload = signing.b64_encode(json.dumps(data, separators=(",", ":")).encode("latin-1")).decode()
    value = f"{payload}:{_timestamp(int(time.time()))}"
    mac = _link_mac(salt, settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return f"{value}:{signing.b64_encode(mac.digest()).decode()}"


def visit_link_token(visit: FollowUpVisit, kind: str) -> str:
    return _signed({"v": visit.pk, "k": kind}, LINK_SALT)


def visit_link_read(token: str) -> tuple[int, str]:
    """The visit id and request kind a link stands for; ``signing.BadSignature`` if forged or expired."""
    max_age = dt.timedelta(days=settings.CARTWATCH["LINK_MAX_AGE_DAYS"])
    data = signing.loads(token, salt=LINK_SALT, max_age=max_age)
    if not isinstance(data, dict) or data.get("k") not in RequestKind.values or not isinstance(data.get("v"), int):
        raise signing.BadSignature("malformed link")
    return data["v"], data["k"]


@functools.cache
def _route(name: str) -> str:
    """The path of a token route with a placeholder for the token (``reverse`` once, not per message)."""
    return reverse(name, args=["TOKEN"])


def visit_link_url(visit: FollowUpVisit, kind: str) -> str:
    return site_url(_route("surveillance:visit-link").replace("TOKEN", visit_link_token(visit, kind)))


def unsubscribe_token(patient: Patient) -> str:
    """Never expires: a one-click unsubscribe must keep working in an old email."""
    return _signed({"p": patient.pk}, UNSUBSCRIBE_SALT)


def unsubscribe_read(token: str) -> int:
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    if not isinstance(data, dict) or not isinstance(data.get("p"), int):
        raise signing.BadSignature("malformed link")
    return data["p"]


def unsubscribe_url(patient: Patient) -> str:
    return site_url(_route("surveillance:unsubscribe").replace("TOKEN", unsubscribe_token(patient)))


# --- calendar ---------------------------------------------------------------------------------------------------
def visit_calendar(visit: FollowUpVisit, *, now: dt.datetime, cancel: bool = False, language: str = "en") -> str:
    """An iCalendar (iTIP) entry for the visit day: the UID is stable per visit, SEQUENCE rises when it moves,
    and a cancelled visit sends METHOD:CANCEL so the patient's calendar drops it.

    Written line by line as the icalendar library writes the same entry (its property order, TEXT escaping and
    75-octet folding; times in UTC, as the database holds them), at a fraction of the cost of its object model:
    ``tests/reminders/test_calendar_entry.py`` holds the two to the same bytes.
    """
    patient = visit.infusion.patient
    organizer = _address_of(settings.DEFAULT_FROM_EMAIL) or "no-reply@cartwatch.invalid"
    start, end = visit.calendar_span()
    # a booked hour keeps the patient busy; a day to book in, or a booked day with no hour, does not
    busy = isinstance(start, dt.datetime) and not cancel
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//CAR-T Watch//Follow-up visits//EN",
        f"METHOD:{'CANCEL' if cancel else 'REQUEST'}",
        "BEGIN:VEVENT",
        "SUMMARY:" + _ics_text(CALENDAR_SUMMARY[language].format(centre=patient.centre.name)),
        "DTSTART" + _ics_moment(start),
        *(["DTEND" + _ics_moment(end)] if end is not None else []),
        "DTSTAMP" + _ics_moment(now),
        "UID:" + _ics_text(visit.ics_uid()),
        f"SEQUENCE:{visit.sequence}",
        f"ATTENDEE;RSVP=FALSE:mailto:{patient.email}",
        "LOCATION:" + _ics_text(patient.centre.location()),
        f"ORGANIZER:mailto:{organizer}",
        "STATUS:" + ("CANCELLED" if cancel else visit.calendar_status()),
        f"TRANSP:{'OPAQUE' if busy else 'TRANSPARENT'}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_ics_fold(line) + "\r\n" for line in lines)


@functools.lru_cache(maxsize=8)
def _address_of(sender: str) -> str:
    """The address part of a sender (``parseaddr``: worked out once, not per message)."""
    return parseaddr(sender)[1]


def _ics_text(value: str) -> str:
    """A TEXT value escaped as RFC 5545 says (and icalendar does, in its order: a literal ``\\N`` is a line break)."""
    return (
        value.replace("\\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _ics_moment(value: dt.date | dt.datetime) -> str:
    """A DATE (``;VALUE=DATE:20261107``) or a DATE-TIME in UTC (``:20261107T140000Z``), parameters included."""
    if isinstance(value, dt.datetime):
        return f":{value.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"
    return f";VALUE=DATE:{value:%Y%m%d}"


def _ics_fold(line: str) -> str:
    """A content line folded as RFC 5545 asks: lines under 75 octets, never splitting a character or an escape."""
    if line.isascii():  # a character an octet: cut every 74, or 73 to carry an escape to the next line
        start, cuts = 0, []
        while len(line) - start > 74:
            end = start + 74
            if line[end - 1] in "\\^" and end - 1 > start:
                end -= 1
            cuts.append(line[start:end])
            start = end
        return "\r\n ".join([*cuts, line[start:]])
    if len(line.encode()) < 75:  # short enough whole: most lines of a Spanish entry
        return line
    folded: list[str] = []
    current: list[str] = []
    size = 0
    for char in line:
        width = len(char.encode())
        if current and size + width >= 75:
            if len(current) > 1 and current[-1] in "\\^":  # an escape starts the next line whole
                carried = current.pop()
                folded.append("".join(current))
                current, size = [carried], len(carried.encode())
            else:
                folded.append("".join(current))
                current, size = [], 0
        current.append(char)
        size += width
    folded.append("".join(current))
    return "\r\n ".join(folded)


def calendar_attachment(ics: str, method: str) -> MIMEText:
    """The calendar entry as an email attachment (``visit.ics``)."""
    part = MIMEText(ics, "calendar", "utf-8")
    part.set_param("method", method)
    part.add_header("Content-Disposition", "attachment", filename="visit.ics")
    return part


# --- messages ---------------------------------------------------------------------------------------------------
class CleanSubjectEmail(EmailMultiAlternatives):
    """An email whose non-ASCII subject (a Spanish weekday or month, a centre's name) is folded after ``Subject:``.

    Django encodes such a subject without the header's name in mind, so the folded header starts with a line break
    and readers show a space before the subject; encoded with its name, it starts on the header's own line.
    """

    def message(self):
        message = super().message()
        if not self.subject.isascii():
            charset = self.encoding or settings.DEFAULT_CHARSET
            message.replace_header("Subject", Header(self.subject, charset, header_name="Subject"))
        return message


@dataclass(frozen=True)
class ReminderEmail:
    """What a reminder's email says, before it is written out: the content of ``reminder_bytes`` and of the Django
    message ``reminder_message`` builds from it."""

    subject: str
    text: str
    html: str
    recipient: str
    #: The headers after Subject, From, To and Date, in order.
    headers: dict[str, str]
    #: The calendar entry attached (a patient's email) and its iTIP method.
    calendar: tuple[str, str] | None = None


def reminder_email(reminder: Reminder, *, now: dt.datetime) -> ReminderEmail:
    """The email a reminder row stands for."""
    mail = _patient_email(reminder, now) if reminder.audience == Audience.PATIENT else _care_team_email(reminder)
    mail.headers["Message-ID"] = reminder.message_id or message_id_for(reminder.idempotency_key)
    mail.headers["Auto-Submitted"] = "auto-generated"
    mail.headers["X-CARTWatch-Reminder"] = str(reminder.pk)
    return mail


def reminder_message(reminder: Reminder, *, now: dt.datetime, connection=None) -> CleanSubjectEmail:
    """The email a reminder row stands for, as a Django message."""
    return _django_message(reminder_email(reminder, now=now), connection)


def _django_message(mail: ReminderEmail, connection=None) -> CleanSubjectEmail:
    message = CleanSubjectEmail(
        subject=mail.subject,
        body=mail.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[mail.recipient],
        connection=connection,
        headers=dict(mail.headers),
    )
    message.attach_alternative(mail.html, "text/html")
    if mail.calendar is not None:
        message.attach(calendar_attachment(*mail.calendar))
    return message


def _render(base: str, language: str, context: dict) -> tuple[str, str]:
    with translation.override(language):
        text = select_template([f"surveillance/email/{base}.{language}.txt", f"surveillance/email/{base}.en.txt"])
        html = select_template([f"surveillance/email/{base}.{language}.html", f"surveillance/email/{base}.en.html"])
        return text.render(context), html.render(context)


#: What changes from one patient email to the next. The rest of what its templates show (``SHAPE``: the purpose and
#: the centre; with the language, and which of these values are empty) is the same for many emails: each such shape
#: is rendered once per process, with markers where these values go, and each email fills them in.
PER_MESSAGE = (
    "due_date",
    "booked_for",
    "window_start",
    "window_end",
    "confirm_url",
    "reschedule_url",
    "done_elsewhere_url",
    "unsubscribe_url",
)
SHAPE = ("purpose", "centre", "centre_phone", "centre_address", "centre_hours")
_MARKER = "\ue000"
#: The rendered shapes, each cut at the markers into its literal pieces and the ``PER_MESSAGE`` names between them
#: (None: a shape the templates show more of than it, rendered in full every time).
_shapes: dict[tuple, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}


def _render_patient(language: str, context: dict) -> tuple[str, str]:
    """``_render("patient", language, context)`` through the rendering of the email's shape. A shape's first email
    is also rendered in full and compared: if the templates show anything but the shape and ``PER_MESSAGE`` as they
    are (a filter on a value, another field), that shape is rendered in full every time."""
    shape = (
        language,
        *(tuple(value) if isinstance(value, list) else value for value in (context[k] for k in SHAPE)),
        *(bool(context[k]) for k in PER_MESSAGE),
    )
    marked = _shapes.get(shape, ())
    if marked == ():
        full = _render("patient", language, context)
        blanks = {k: f"{_MARKER}{k}{_MARKER}" if context[k] else "" for k in PER_MESSAGE}
        text, html = _render("patient", language, {k: context[k] for k in SHAPE} | blanks)
        marked = (tuple(text.split(_MARKER)), tuple(html.split(_MARKER)))
        # a marker character in the shape itself (a centre's name...) would shift the pieces: rendered in full then
        cut_right = all(name in PER_MESSAGE for pieces in marked for name in pieces[1::2])
        if len(_shapes) >= 512:
            _shapes.clear()
        _shapes[shape] = marked if cut_right and _filled(marked, context) == full else None
        return full
    if marked is None:
        return _render("patient", language, context)
    return _filled(marked, context)


def _filled(marked: tuple[tuple[str, ...], tuple[str, ...]], context: dict) -> tuple[str, str]:
    """A shape's text and HTML with this email's values between its pieces (escaped in the HTML as the template
    escapes them: ``conditional_escape``, without its lazy-string wrapper): one join each, rather than a search of
    the whole text for every value."""
    text, html = list(marked[0]), list(marked[1])
    for i in range(1, len(text), 2):
        text[i] = context[text[i]]
    for i in range(1, len(html), 2):
        value = context[html[i]]
        html[i] = value.__html__() if hasattr(value, "__html__") else escape_html(value)
    return "".join(text), "".join(html)


LONG_DATE = {"en": "l, F j, Y", "es": "l j \\d\\e F \\d\\e Y"}


@functools.lru_cache(maxsize=2048)
def long_date(day: dt.date, language: str) -> str:
    """ "Saturday, November 7, 2026" / "sábado 7 de noviembre de 2026". Kept per process: the reminders of an hour
    name a few days, each in a language or two, and a translated date costs a tenth of a message."""
    with translation.override(language):
        return formats.date_format(day, LONG_DATE[language])


def centres_attach(reminders: Sequence[Reminder]) -> None:
    """Give the reminders' patients their centres, read in one query, one instance per centre: what the messages
    take from a centre (its clinic calendar first of all) is then read once for all of them, and the rows are not
    each built with a copy of their centre (``select_related`` would build one per row)."""
    patients = [reminder.visit.infusion.patient for reminder in reminders]
    centres = TreatmentCentre.objects.in_bulk({patient.centre_id for patient in patients})
    for patient in patients:
        patient.centre = centres[patient.centre_id]


def patient_context(reminder: Reminder) -> dict:
    """What a patient reminder says, whichever way it goes: the email's and the printed letter's data."""
    visit = reminder.visit
    patient = visit.infusion.patient
    language = patient_language(patient)
    purpose = Purpose(reminder.purpose)
    cancel = purpose == Purpose.CANCELLED
    centre = patient.centre
    # the window as the patient can use it: from its first to its last day the clinic is open
    first_open, last_open = centre.calendar().open_bounds(visit.window_start, visit.window_end)
    context = {
        "purpose": purpose.value,
        "centre": centre.name,
        "centre_phone": centre.phone,
        "centre_address": [line.strip() for line in centre.address.splitlines() if line.strip()],
        "centre_hours": centre.opening_hours,
        "visit": visit,
        "due_date": long_date(visit.due_date, language),
        "booked_for": long_date(visit.booked_for, language) if visit.booked_for else "",
        "window_start": long_date(first_open, language),
        "window_end": long_date(last_open, language),
        "days_before": reminder.days_before,
        "confirm_url": "" if cancel else visit_link_url(visit, RequestKind.CONFIRM),
        "reschedule_url": "" if cancel else visit_link_url(visit, RequestKind.RESCHEDULE),
        "done_elsewhere_url": "" if cancel else visit_link_url(visit, RequestKind.DONE_ELSEWHERE),
        "unsubscribe_url": unsubscribe_url(patient),
    }
    return context


def _patient_email(reminder: Reminder, now: dt.datetime) -> ReminderEmail:
    context = patient_context(reminder)
    visit, language = reminder.visit, patient_language(reminder.visit.infusion.patient)
    purpose = Purpose(reminder.purpose)
    cancel = purpose == Purpose.CANCELLED
    text, html = _render_patient(language, context)
    return ReminderEmail(
        subject=PATIENT_SUBJECTS[language][purpose].format(date=context["due_date"]),
        text=text,
        html=html,
        recipient=reminder_recipient(reminder),
        headers={
            "List-Unsubscribe": f"<{context['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Content-Language": language,
        },
        calendar=(
            visit_calendar(visit, now=now, cancel=cancel, language=language),
            "CANCEL" if cancel else "REQUEST",
        ),
    )


def care_team_context(visit: FollowUpVisit) -> dict:
    return {
        "patient_id": visit.infusion.patient_id,
        "visit": visit,
        "visit_url": site_url(reverse("admin:surveillance_followupvisit_change", args=[visit.pk])),
        "centre": visit.infusion.patient.centre.name,
    }


def _care_team_email(reminder: Reminder) -> ReminderEmail:
    visit = reminder.visit
    context = {**care_team_context(visit), "purpose": reminder.purpose}
    language = centre_language(visit.infusion.patient.centre)
    text, html = _render("care_team", language, context)
    with translation.override(language):
        subject = str(CARE_TEAM_SUBJECTS[Purpose(reminder.purpose)]).format(patient_id=visit.infusion.patient_id)
    return ReminderEmail(subject=subject, text=text, html=html, recipient=reminder_recipient(reminder), headers={})


# --- rendered ahead ---------------------------------------------------------------------------------------------
def reminder_fingerprint(reminder: Reminder) -> str:
    """A digest of everything a reminder's email is made of, and of where it goes.

    Bytes rendered ahead are sent only while this still matches: a moved or re-labelled visit, a new address or
    language, a renamed centre or a new site address makes them stale, and the message is rendered afresh.
    """
    visit = reminder.visit
    patient = visit.infusion.patient
    centre = patient.centre
    parts = (
        reminder.pk,
        reminder.idempotency_key,
        reminder.audience,
        reminder.purpose,
        reminder.days_before,
        visit.pk,
        visit.status,
        visit.sequence,
        visit.label,
        visit.occurrence,
        visit.due_date,
        visit.window_start,
        visit.window_end,
        visit.booked_for,
        visit.booked_start,
        visit.booked_end,
        patient.pk,
        patient.email,
        patient_language(patient),
        centre.calendar().open_bounds(visit.window_start, visit.window_end),
        centre.name,
        centre.phone,
        centre.address,
        centre.opening_hours,
        centre.care_team_email,
        centre_language(centre),
        settings.SITE_URL,
        settings.DEFAULT_FROM_EMAIL,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def reminder_recipient(reminder: Reminder) -> str:
    """Who a reminder goes to: the patient, or the centre's care team."""
    visit = reminder.visit
    if reminder.audience == Audience.PATIENT:
        return visit.infusion.patient.email
    return visit.infusion.patient.centre.care_team_email


def _envelope_address(address: str) -> str:
    """An address as the SMTP envelope carries it; ``ValueError`` for one Django cannot encode.

    Nearly every address is plain ASCII and passes as it is; only the others go through ``sanitize_address``
    (IDNA host names, encoded display names), which costs more than sending the message."""
    return address if PLAIN_ADDRESS.fullmatch(address) else sanitize_address(address, settings.DEFAULT_CHARSET)


#: The sender is the same on every message (a display name, so never plain): worked out once.
_envelope_sender = functools.lru_cache(maxsize=8)(_envelope_address)


def reminder_envelope(reminder: Reminder) -> tuple[str, list[str]]:
    """The SMTP envelope (sender, recipients) as the server receives it; ``ValueError`` for an unusable address."""
    return _envelope_sender(settings.DEFAULT_FROM_EMAIL), [_envelope_address(reminder_recipient(reminder))]


def reminder_bytes(reminder: Reminder, *, now: dt.datetime) -> bytes:
    """The reminder's whole email as the server receives it (CRLF line ends): the bytes of ``reminder_message``,
    written directly (``mime``) unless a part needs Django's quoted-printable or the charset is not UTF-8."""
    mail = reminder_email(reminder, now=now)
    raw = None
    if settings.DEFAULT_CHARSET == mime.CHARSET:
        raw = mime.alternatives_bytes(
            subject=mail.subject,
            body=mail.text,
            html=mail.html,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[mail.recipient],
            date=formatdate(localtime=settings.EMAIL_USE_LOCALTIME),
            headers=mail.headers,
            attachments=() if mail.calendar is None else (mime.calendar_part(*mail.calendar),),
        )
    return raw if raw is not None else _django_message(mail).message().as_bytes(linesep="\r\n")


class _RenderedMessage(email.message.Message):
    """A message already rendered to bytes: mail backends ask it for its bytes and get them unchanged."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def as_bytes(self, unixfrom: bool = False, policy=None, linesep: str = "\n") -> bytes:
        return self.raw if linesep == "\r\n" else self.raw.replace(b"\r\n", linesep.encode())


class RenderedEmail(EmailMessage):
    """An email rendered before (``reminder_bytes``), sent through any Django mail backend as its stored bytes,
    with its envelope already checked (``reminder_envelope``)."""

    def __init__(self, raw: bytes, envelope: tuple[str, list[str]], *, connection=None) -> None:
        super().__init__(from_email=settings.DEFAULT_FROM_EMAIL, to=envelope[1], connection=connection)
        self.raw = raw
        self.envelope = envelope

    def message(self) -> _RenderedMessage:
        return _RenderedMessage(self.raw)


def digest_message(centre, context: dict, *, message_id: str, connection=None) -> CleanSubjectEmail:
    """The weekly care-team digest, in the centre's language: counts and admin links, patients named by id only."""
    language = centre_language(centre)
    text, html = _render("digest", language, context)
    with translation.override(language):
        week = formats.date_format(context["week_start"], "d M Y")
        subject = str(DIGEST_SUBJECT).format(centre=centre.name, week=week)
    message = CleanSubjectEmail(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[centre.care_team_email],
        connection=connection,
        headers={"Message-ID": message_id, "Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(html, "text/html")
    return message
