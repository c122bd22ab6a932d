"""The Twilio backend keeps one connection for a batch and for the batches after it (unless it sat idle), and reads
the proxy settings of the environment once per batch, still honouring them (an egress proxy named by
``HTTP_PROXY``/``HTTPS_PROXY``, bypassed by ``NO_PROXY``)."""

from __future__ import annotations

import socket

import pytest

from surveillance.reminders import sms_backends

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy")


def _message(n: int) -> sms_backends.SmsMessage:
    return sms_backends.SmsMessage(to=f"+1617555014{n}", body=f"Drill Centre: message {n}")


@pytest.fixture
def no_proxy_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_it_sends_a_batch_over_one_kept_alive_connection(twilio_settings, no_proxy_environment):
    backend = sms_backends.get_sms_backend()
    backend.open()
    sids = [backend.send_message(_message(n)) for n in range(3)]
    backend.close()

    assert [m["Sid"] for m in twilio_settings.messages] == sids
    assert twilio_settings.connections == 1


def _batch(first: int) -> list[str]:
    backend = sms_backends.get_sms_backend()
    backend.open()
    try:
        return [backend.send_message(_message(n)) for n in range(first, first + 2)]
    finally:
        backend.close()


def test_it_keeps_the_connection_for_the_next_batch_unless_it_sat_idle(twilio_settings, no_proxy_environment):
    sids = _batch(0) + _batch(2)
    assert twilio_settings.connections == 1

    quiet = sms_backends._TwilioSession.IDLE_SECONDS + 1
    sms_backends.get_sms_backend().twilio.last_used -= quiet  # the process sent nothing for a while
    sids += _batch(4)
    assert twilio_settings.connections == 2
    assert [m["Sid"] for m in twilio_settings.messages] == sids


def test_it_goes_through_the_proxy_the_environment_names_unless_no_proxy_bypasses_it(
    twilio_settings, no_proxy_environment
):
    with socket.socket() as sock:  # a port nothing listens on: the proxy is down
        sock.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    no_proxy_environment.setenv("HTTP_PROXY", dead_proxy)
    no_proxy_environment.setenv("http_proxy", dead_proxy)

    with pytest.raises(OSError):
        sms_backends.get_sms_backend().send_message(_message(1))
    assert twilio_settings.messages == []

    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    no_proxy_environment.setenv("no_proxy", "127.0.0.1")
    sid = sms_backends.get_sms_backend().send_message(_message(2))
    assert [m["Sid"] for m in twilio_settings.messages] == [sid]
