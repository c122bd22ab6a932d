"""A message handed over with its envelope's addresses quoted once behaves as ``smtplib.SMTP.sendmail``: the same
commands reach a real SMTP server, the same answer or the same exception comes back, the session is left as
sendmail leaves it."""

from __future__ import annotations

import smtplib
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveillance.reminders.smtp_envelope import envelope_send, quoted
from tests.reminders.conftest import loopback_smtp

SENDER = "CAR-T Watch <reminders@cartwatch.example.org>"
MESSAGE = b"Subject: Visit\r\n\r\nYour visit is due.\r\n"


@given(
    address=st.emails()
    | st.sampled_from(
        [SENDER, "Ana <ana@example.org>", '"a b"@example.org', "<x@example.org>", "a..b@example.org", "x", ""]
    )
)
@settings(max_examples=300, deadline=None)
def test_it_quotes_an_address_as_smtplib_does(address):
    assert quoted(address) == smtplib.quoteaddr(address)


class ScriptedServer:
    """An aiosmtpd handler that answers MAIL, RCPT and DATA as scripted (250 when the script is empty) and keeps
    every command's address and options."""

    def __init__(self) -> None:
        self.answers: dict[str, deque[str]] = {"MAIL": deque(), "RCPT": deque(), "DATA": deque()}
        self.commands: list[tuple] = []

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.commands.append(("MAIL", address, tuple(mail_options)))
        answer = self.answers["MAIL"].popleft() if self.answers["MAIL"] else "250 OK"
        if answer.startswith("250"):
            envelope.mail_from = address
        return answer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.commands.append(("RCPT", address, tuple(rcpt_options)))
        answer = self.answers["RCPT"].popleft() if self.answers["RCPT"] else "250 OK"
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server, session, envelope):
        self.commands.append(("DATA", envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content))
        return self.answers["DATA"].popleft() if self.answers["DATA"] else "250 Accepted"

    async def handle_RSET(self, server, session, envelope):
        self.commands.append(("RSET",))
        return "250 OK"


@pytest.fixture
def server():
    with loopback_smtp(ScriptedServer()) as handler:
        yield handler


def hand_over(server: ScriptedServer, send, recipients: list[str], script: dict[str, list[str]]) -> tuple:
    """What one hand-over gave (its answer or its exception's type and arguments), what the server was told, and
    whether the session was left open."""
    for command, answers in script.items():
        server.answers[command].extend(answers)
    server.commands.clear()
    smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=5)
    try:
        try:
            outcome = ("answer", send(smtp, SENDER, recipients, MESSAGE))
        except smtplib.SMTPException as exc:
            outcome = (type(exc).__name__, exc.args)
        left_open = smtp.sock is not None
    finally:
        smtp.close()
    return outcome, list(server.commands), left_open


@pytest.mark.parametrize(
    ("recipients", "script"),
    [
        (["ana@example.org"], {}),
        (["ana@example.org", "Bo <bo@example.org>"], {"RCPT": ["250 OK", "550 5.1.1 No such user"]}),
        (["ana@example.org"], {"RCPT": ["550 5.1.1 No such user"]}),
        (["ana@example.org"], {"MAIL": ["553 5.1.8 Sender refused"]}),
        (["ana@example.org"], {"MAIL": ["421 4.3.2 Shutting down"]}),
        (["ana@example.org", "bo@example.org"], {"RCPT": ["421 4.3.2 Shutting down"]}),
        (["ana@example.org"], {"DATA": ["554 5.6.0 Message refused"]}),
        (["ana@example.org"], {"DATA": ["451 4.3.0 Try again later"]}),
    ],
    ids=["accepted", "one-refused", "all-refused", "sender-refused", "421-mail", "421-rcpt", "554-data", "451-data"],
)
def test_it_hands_a_message_over_as_sendmail_does(server, recipients, script):
    def sendmail(smtp, sender, to, message):
        return smtp.sendmail(sender, to, message)

    expected = hand_over(server, sendmail, recipients, script)
    assert hand_over(server, envelope_send, recipients, script) == expected
