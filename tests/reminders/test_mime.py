"""An email's bytes written directly are the bytes Django's mail classes write for the same message."""

from __future__ import annotations

import datetime as dt
import re
from unittest import mock

import pytest
from django.core.mail import BadHeaderError
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.models.reminders import Audience, Purpose
from surveillance.reminders import messages, mime
from tests.reminders.conftest import add_reminder

NOW = dt.datetime(2026, 11, 2, 14, tzinfo=dt.UTC)
DATE = "Mon, 02 Nov 2026 14:00:00 -0000"
_BOUNDARY = re.compile(rb"={15}\d{19}==")
#: Text as it comes out of templates and the database: any line ends, accents, long and short lines.
TEXT = st.lists(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)))
    | st.sampled_from(["\r\n", "\n", "\r", " ", "y" * 300, "é" * 300, "--=" * 10])
).map("".join)
HEADER = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120) | st.sampled_from(
    ["Recordatorio: su visita de seguimiento el miércoles 9 de diciembre de 2026", "<https://x.org/" + "t" * 90 + ">"]
)


def boundaries_numbered(raw: bytes) -> bytes:
    """The random boundaries replaced by their order of appearance (the one thing that differs between renderings)."""
    seen: dict[bytes, bytes] = {}
    return _BOUNDARY.sub(lambda m: seen.setdefault(m.group(), b"BOUNDARY-%d" % len(seen)), raw)


def django_bytes(subject, body, html, to, headers, attachment=None) -> bytes:
    """What Django writes for the message, sent on ``DATE``."""
    message = messages.CleanSubjectEmail(subject, body, "CAR-T Watch <no-reply@cartwatch.invalid>", to, headers=headers)
    message.attach_alternative(html, "text/html")
    if attachment:
        message.attach(messages.calendar_attachment(*attachment))
    with mock.patch("django.core.mail.message.formatdate", return_value=DATE):
        return message.message().as_bytes(linesep="\r\n")


def direct_bytes(subject, body, html, to, headers, attachment=None) -> bytes | None:
    return mime.alternatives_bytes(
        subject=subject,
        body=body,
        html=html,
        from_email="CAR-T Watch <no-reply@cartwatch.invalid>",
        to=to,
        date=DATE,
        headers=headers,
        attachments=(mime.calendar_part(*attachment),) if attachment else (),
    )


@given(
    subject=HEADER,
    body=TEXT,
    html=TEXT,
    unsubscribe=HEADER,
    language=st.sampled_from(["en", "es", "x" * 70]),
    attachment=st.none() | st.tuples(TEXT, st.sampled_from(["REQUEST", "CANCEL"])),
    to=st.sampled_from(["p@example.org", "José <jose@exämple.org>", "a" * 90 + "@example.org"]),
)
@settings(max_examples=300, deadline=None)
def test_it_writes_what_django_writes(subject, body, html, unsubscribe, language, attachment, to):
    headers = {"List-Unsubscribe": unsubscribe, "Content-Language": language, "Message-ID": "<1@cartwatch>"}
    try:
        written = direct_bytes(subject, body, html, [to], headers, attachment)
    except BadHeaderError:  # a line break in a header: refused as Django refuses it
        with pytest.raises(BadHeaderError):
            django_bytes(subject, body, html, [to], headers, attachment)
        return
    if written is None:  # left to Django: only a line too long for 8bit
        assert any(len(line.encode()) > 998 for text in (body, html) for line in text.splitlines())
        return
    assert boundaries_numbered(written) == boundaries_numbered(
        django_bytes(subject, body, html, [to], headers, attachment)
    )


def test_it_leaves_a_line_too_long_for_8bit_to_django():
    headers = {"Message-ID": "<1@cartwatch>"}
    assert direct_bytes("Hello", "x" * 999, "<p>hi</p>", ["p@example.org"], headers) is None
    assert direct_bytes("Hello", "x" * 998, "<p>hi</p>", ["p@example.org"], headers) is not None


def sent_and_built(reminder) -> tuple[bytes, bytes]:
    """A reminder's bytes as the dispatcher sends them, and its Django message's, at the same moment."""
    with (
        mock.patch("django.core.signing.time.time", return_value=NOW.timestamp()),
        mock.patch("surveillance.reminders.messages.formatdate", return_value=DATE),
        mock.patch("django.core.mail.message.formatdate", return_value=DATE),
    ):
        sent = messages.reminder_bytes(reminder, now=NOW)
        built = messages.reminder_message(reminder, now=NOW).message().as_bytes(linesep="\r\n")
    return boundaries_numbered(sent), boundaries_numbered(built)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("audience", "purpose", "language"),
    [
        (Audience.PATIENT, Purpose.UPCOMING, "en"),
        (Audience.PATIENT, Purpose.MOVED, "es"),
        (Audience.PATIENT, Purpose.CANCELLED, "es"),
        (Audience.CARE_TEAM, Purpose.OVERDUE, "en"),
    ],
)
def test_it_sends_a_reminder_as_the_bytes_of_its_django_message(
    centre_a, make_patient, open_visit, audience, purpose, language
):
    centre_a.address = "12 Rue de la Paix, Bâtiment B\nParis; 75002"
    centre_a.phone, centre_a.opening_hours = "+33 1 23 45 67 89", "Lundi-vendredi, 8 h - 18 h"
    centre_a.save()
    visit = open_visit(make_patient(centre_a, preferred_language=language), dt.date(2026, 12, 4))
    sent, built = sent_and_built(add_reminder(visit, NOW, audience=audience, purpose=purpose))
    assert sent == built


@pytest.mark.django_db
def test_it_sends_a_line_too_long_for_8bit_as_django_writes_it(centre_a, make_patient, open_visit):
    centre_a.address = "Building " * 120  # one line of 1,080 characters in the message
    centre_a.save()
    visit = open_visit(make_patient(centre_a), dt.date(2026, 12, 4))
    sent, built = sent_and_built(add_reminder(visit, NOW))
    assert sent == built and b"Content-Transfer-Encoding: quoted-printable" in sent
