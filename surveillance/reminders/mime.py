"""An email's bytes exactly as Django's mail classes write them, without building the ``email`` package's objects.

A reminder is text and HTML alternatives, and for a patient a calendar entry attached. Written through
``EmailMultiAlternatives.message().as_bytes()`` that costs more than the message's SMTP transaction: a MIME object
per part, every header folded through ``email.header.Header``, a regular expression compiled for every boundary.
Here the same bytes are written directly. A header that is printable ASCII and fits on its line is written as it
is, which is all the folding does to it; any other goes through the functions Django and the ``email`` package use
(``forbid_multi_line_headers``, the compat32 policy's folding). A body with a line too long for 8bit, which Django
writes quoted-printable, is left to Django (``None``). ``tests/reminders/test_mime.py`` holds every byte to
Django's rendition of the same message, the random boundaries aside.
"""

from __future__ import annotations

import base64
import functools
import random
import re
import sys
from email.header import Header
from email.policy import compat32

from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, forbid_multi_line_headers

NL = "\r\n"
#: What Django's ``as_bytes(linesep="\r\n")`` folds headers with.
POLICY = compat32.clone(linesep=NL)
#: The line ends the generator turns into ``NL`` in a body.
_LINE_END = re.compile(r"\r\n|\r|\n")
#: The generator's boundary: 15 "=", a random number zero-padded to sys.maxsize's width, "==".
_WIDTH = len(repr(sys.maxsize - 1))
CHARSET = "utf-8"


def header(name: str, value: str) -> bytes:
    """One header line, as Django sets it on its message and the compat32 generator folds it."""
    if value.isascii() and value.isprintable() and not value.endswith(" "):
        if len(name) + 2 + len(value) <= 78:
            return f"{name}: {value}{NL}".encode()
        if " " not in value:  # one word (a link, a boundary): folded by its length alone
            before, after = _one_word_folded(name, len(value))
            return before + value.encode() + after
    return POLICY.fold_binary(name, forbid_multi_line_headers(name, value, CHARSET)[1])


@functools.lru_cache(maxsize=256)
def _one_word_folded(name: str, length: int) -> tuple[bytes, bytes]:
    """What the folding puts before and after a value of ``length`` printable ASCII characters and no space: it
    breaks lines at spaces only (the other split characters only where a space follows), so that depends on the
    header's name and the value's length alone."""
    word = "x" * length
    before, after = POLICY.fold_binary(name, forbid_multi_line_headers(name, word, CHARSET)[1]).split(word.encode())
    return before, after


@functools.lru_cache(maxsize=1024)
def subject_header(subject: str) -> bytes:
    """The Subject as ``messages.CleanSubjectEmail`` writes it: a non-ASCII subject folded with its header's name.
    Kept per process: the reminders of an hour have a few subjects (a date, a language, a purpose)."""
    if subject.isascii():
        return header("Subject", subject)
    forbid_multi_line_headers("Subject", subject, CHARSET)  # a line break in a subject is refused, as Django does
    return POLICY.fold_binary("Subject", Header(subject, CHARSET, header_name="Subject"))


def text_part(body: str, subtype: str) -> bytes | None:
    """A ``text/<subtype>`` part as Django's ``SafeMIMEText`` writes it in UTF-8: 7bit or 8bit, or None when a line
    is too long for either (Django writes that part quoted-printable)."""
    lines = body.splitlines()
    # a character is at most 4 bytes: only a line of more than a quarter of the limit in characters can pass it
    if max(map(len, lines), default=0) * 4 > RFC5322_EMAIL_LINE_LENGTH_LIMIT and any(
        len(line.encode(errors="surrogateescape")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT for line in lines
    ):
        return None
    data = _LINE_END.sub(NL, body).encode(CHARSET)
    encoding = "7bit" if data.isascii() else "8bit"
    head = f'Content-Type: text/{subtype}; charset="{CHARSET}"{NL}MIME-Version: 1.0{NL}'
    return f"{head}Content-Transfer-Encoding: {encoding}{NL}{NL}".encode() + data


def calendar_part(ics: str, method: str) -> bytes:
    """The attached ``visit.ics`` as ``messages.calendar_attachment`` makes it: UTF-8, base64 in 76-column lines."""
    head = (
        f"MIME-Version: 1.0{NL}Content-Transfer-Encoding: base64{NL}"
        f'Content-Type: text/calendar; charset="{CHARSET}"; method="{method}"{NL}'
        f'Content-Disposition: attachment; filename="visit.ics"{NL}{NL}'
    )
    return head.encode() + base64.encodebytes(ics.encode(CHARSET)).replace(b"\n", NL.encode())


def multipart(subtype: str, parts: list[bytes]) -> tuple[bytes, bytes]:
    """(its Content-Type header, its body) of a multipart of ``parts``, under a boundary none of them contains."""
    while True:
        boundary = f"{'=' * 15}{random.randrange(sys.maxsize):0{_WIDTH}d}=="
        marker = f"--{boundary}".encode()
        if not any(marker in part for part in parts):
            break
    between = f"{NL}--{boundary}{NL}".encode()
    body = marker + NL.encode() + between.join(parts) + f"{NL}--{boundary}--{NL}".encode()
    before, after = _multipart_type(subtype)
    return before + boundary.encode() + after, body


@functools.lru_cache(maxsize=8)
def _multipart_type(subtype: str) -> tuple[bytes, bytes]:
    """A multipart's Content-Type header before and after its boundary: every boundary has the same length and no
    space, so the header folds the same way whichever it is."""
    sample = f"{'=' * 15}{0:0{_WIDTH}d}=="
    before, after = header("Content-Type", f'multipart/{subtype}; boundary="{sample}"').split(sample.encode())
    return before, after


def alternatives_bytes(
    *,
    subject: str,
    body: str,
    html: str,
    from_email: str,
    to: list[str],
    date: str,
    headers: dict[str, str],
    attachments: tuple[bytes, ...] = (),
) -> bytes | None:
    """The bytes of ``messages.CleanSubjectEmail(subject, body, from_email, to, headers=headers)`` with ``html`` as
    its alternative and the ready-made ``attachments`` parts, sent on ``date`` (an RFC 5322 date); None when Django
    would write a part quoted-printable (left to it). ``headers`` are the others, a Message-ID among them (Django
    would make one up), and no From, To, Cc, Reply-To or Date."""
    texts = [text_part(body, "plain")] if body else []
    texts.append(text_part(html, "html"))
    if None in texts:
        return None
    content_type, content = multipart("alternative", texts)
    if attachments:
        inner = content_type + b"MIME-Version: 1.0" + NL.encode() * 2 + content
        content_type, content = multipart("mixed", [inner, *attachments])
    lines = [content_type, b"MIME-Version: 1.0" + NL.encode(), subject_header(subject), header("From", from_email)]
    if to:
        lines.append(header("To", ", ".join(to)))
    lines.append(header("Date", date))
    lines += [header(name, value) for name, value in headers.items()]
    return b"".join(lines) + NL.encode() + content
