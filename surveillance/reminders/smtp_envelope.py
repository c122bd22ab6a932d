"""One message handed to an open SMTP session, its envelope's addresses quoted once rather than parsed per message.

``smtplib.SMTP.sendmail`` quotes the sender and every recipient with ``quoteaddr``, which parses the address with
the ``email`` package a character at a time: for a reminder, a tenth of the dispatcher's CPU, the same sender
parsed again on every message. ``envelope_send`` is ``sendmail`` itself, command for command and error for error
(the same exceptions, the same RSET or close), with the quoting done by ``quoted``: the sender's kept per
process, a plain address (most recipients) quoted as ``quoteaddr`` quotes it, without the parse.
``tests/reminders/test_smtp_envelope.py`` holds both to smtplib's. Its ``data`` step also lets the dispatcher do
one last thing after the server's 354 and before the message (record the earlier message's outcome).
"""

from __future__ import annotations

import functools
import re
import smtplib
from collections.abc import Callable

#: A plain ASCII address (dot-atom local part, host name): ``quoteaddr`` gives it back as ``<address>``, and
#: ``sanitize_address`` unchanged.
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)


#: A line starting with a period, doubled in DATA as ``smtplib`` does (RFC 5321, 4.5.2).
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


def quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``."""
    if PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return _quoted_other(address)


@functools.lru_cache(maxsize=64)
def _quoted_other(address: str) -> str:
    """Any other address (the sender, with its display name, above all): parsed by smtplib, once per process."""
    return smtplib.quoteaddr(address)


def envelope_send(
    smtp: smtplib.SMTP,
    sender: str,
    recipients: list[str],
    message: bytes,
    before_data: Callable[[], None] = lambda: None,
) -> dict:
    """``smtp.sendmail(sender, recipients, message)`` with the addresses quoted by ``quoted``; returns the refused
    recipients as ``sendmail`` does. ``before_data`` is called between the server's 354 and the message (``data``)."""
    smtp.ehlo_or_helo_if_needed()
    options = f" size={len(message)}" if smtp.does_esmtp and smtp.has_extn("size") else ""
    smtp.putcmd("mail", f"from:{quoted(sender)}{options}")
    code, response = smtp.getreply()
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            smtp._rset()
        raise smtplib.SMTPSenderRefused(code, response, sender)
    refused = {}
    for recipient in recipients:
        smtp.putcmd("rcpt", f"to:{quoted(recipient)}")
        code, response = smtp.getreply()
        if code not in (250, 251):
            refused[recipient] = (code, response)
        if code == 421:
            smtp.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(recipients):
        smtp._rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    code, response = data(smtp, message, before_data)
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            smtp._rset()
        raise smtplib.SMTPDataError(code, response)
    return refused


def data(smtp: smtplib.SMTP, message: bytes, before: Callable[[], None]) -> tuple[int, bytes]:
    """``smtp.data(message)`` for a message in bytes, with ``before()`` called once the server has said 354: the
    last moment the message can still be withheld. If ``before`` raises, the session is closed without the
    message's end, so the server drops what it has, and the error goes on."""
    smtp.putcmd("data")
    code, response = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, response)
    try:
        before()
    except BaseException:
        smtp.close()
        raise
    quoted_data = _LEADING_PERIOD.sub(b"..", message)
    if not quoted_data.endswith(b"\r\n"):
        quoted_data += b"\r\n"
    smtp.send(quoted_data + b".\r\n")
    return smtp.getreply()
