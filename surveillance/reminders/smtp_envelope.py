"""One message handed to an open SMTP session, its envelope's addresses quoted once rather than parsed per message.

``smtplib.SMTP.sendmail`` quotes the sender and every recipient with ``quoteaddr``, which parses the address with
the ``email`` package a character at a time: for a reminder, a tenth of the dispatcher's CPU, the same sender
parsed again on every message. ``envelope_send`` is ``sendmail`` itself, command for command and error for error
(the same exceptions, the same RSET or close), with the quoting done by ``quoted``: the sender's kept per
process, a plain address (most recipients) quoted as ``quoteaddr`` quotes it, without the parse.
``tests/reminders/test_smtp_envelope.py`` holds both to smtplib's.
"""

from __future__ import annotations

import functools
import re
import smtplib

#: A plain ASCII address (dot-atom local part, host name): ``quoteaddr`` gives it back as ``<address>``, and
#: ``sanitize_address`` unchanged.
PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)


def quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``."""
    if PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return _quoted_other(address)


@functools.lru_cache(maxsize=64)
def _quoted_other(address: str) -> str:
    """Any other address (the sender, with its display name, above all): parsed by smtplib, once per process."""
    return smtplib.quoteaddr(address)


def envelope_send(smtp: smtplib.SMTP, sender: str, recipients: list[str], message: bytes) -> dict:
    """``smtp.sendmail(sender, recipients, message)`` with the addresses quoted by ``quoted``; returns the refused
    recipients as ``sendmail`` does."""
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
    code, response = smtp.data(message)
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            smtp._rset()
        raise smtplib.SMTPDataError(code, response)
    return refused
