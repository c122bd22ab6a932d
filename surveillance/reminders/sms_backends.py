"""Where an SMS goes: a backend interface in the style of Django's email backends.

``CARTWATCH_SMS_BACKEND`` names the class. The embedded default writes each message to a file under
``var/sms/`` (one console line each, naming no number), as the mail backend does under ``var/mail/``; production
sends through Twilio's REST API with the official SDK. A backend returns the provider's id of an accepted message
(delivery callbacks are matched by it) and raises ``SmsRefused`` when the provider answers with an error;
``OSError`` (the SDK's connection errors are ``requests`` exceptions, which are) when no answer came.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

logger = logging.getLogger("surveillance.sms")
#: The SDK logs every request it makes, body and number included, at INFO: it gets a logger that says only
#: warnings, whatever the service's log level.
_sdk_logger = logging.getLogger("surveillance.sms.sdk")
_sdk_logger.setLevel(logging.WARNING)

TWILIO_API = "https://api.twilio.com"


@dataclass(frozen=True)
class SmsMessage:
    to: str  # E.164
    body: str
    #: Where the provider reports the message's fate (delivered, undelivered, failed); "" for none.
    status_callback: str = ""


class SmsRefused(Exception):
    """The provider answered with an error. ``status`` is the HTTP status, ``code`` the provider's own error
    code; neither carries the number (provider messages often quote it, so they are not kept)."""

    def __init__(self, status: int, code: int | None) -> None:
        super().__init__(f"{status} provider error {code}")
        self.status = status
        self.code = code

    @property
    def temporary(self) -> bool:
        return self.status == 429 or self.status >= 500


class BaseSmsBackend:
    """One connection's worth of sending; ``open``/``close`` around a batch, like an email backend."""

    #: Whether the provider reports a message's fate to ``SmsMessage.status_callback``.
    status_callbacks = False

    def open(self) -> None:
        """Nothing to open by default: HTTP providers connect per request."""

    def close(self) -> None:
        """Nothing to close by default."""

    def send_message(self, message: SmsMessage) -> str:
        raise NotImplementedError


class SummaryFileSmsBackend(BaseSmsBackend):
    """The embedded default: every message is a file under ``SMS_FILE_PATH`` (``var/sms/``)."""

    def __init__(self, file_path: str | Path | None = None) -> None:
        self.path = Path(file_path or settings.SMS_FILE_PATH)

    def send_message(self, message: SmsMessage) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        provider_id = f"file-{uuid.uuid4().hex}"
        target = self.path / f"{provider_id}.txt"
        target.write_text(f"To: {message.to}\n\n{message.body}\n", encoding="utf-8")
        logger.info("1 SMS written to %s", target)
        return provider_id


class TwilioSmsBackend(BaseSmsBackend):
    """Twilio's Messages API through the official SDK, configured from the environment (``TWILIO_*``).

    ``TWILIO_API_URL`` sends the SDK's requests to another origin (a regional proxy, a test double) through the
    SDK's own extension point, a custom HTTP client. A backend lasts one batch; the SDK client under it, and its
    keep-alive connection, last as long as the process (``_TwilioSession``).
    """

    status_callbacks = True

    def __init__(self) -> None:
        sid, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
        if not sid or not token:
            raise ImproperlyConfigured("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are required for Twilio SMS")
        if not settings.TWILIO_FROM_NUMBER and not settings.TWILIO_MESSAGING_SERVICE_SID:
            raise ImproperlyConfigured("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID is required")
        self.sender = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM_NUMBER}
        )
        self.twilio = _TwilioSession.current(sid, token, settings.TWILIO_API_URL or TWILIO_API, settings.SMS_TIMEOUT)
        self.twilio.read_environment()

    def open(self) -> None:
        self.twilio.drop_if_idle()

    def close(self) -> None:
        """Keep the connection for the next batch of the run; a connection idle for long is dropped at ``open``."""
        self.twilio.last_used = time.monotonic()

    def send_message(self, message: SmsMessage) -> str:
        from twilio.base.exceptions import TwilioRestException

        extra = {"status_callback": message.status_callback} if message.status_callback else {}
        try:
            sent = self.twilio.messages.create(to=message.to, body=message.body, **self.sender, **extra)
        except TwilioRestException as exc:
            raise SmsRefused(exc.status, exc.code) from None
        return sent.sid or ""


class _TwilioSession:
    """The SDK client of this process and thread, with its HTTP session: one per configuration, made once.

    Building a ``Client`` and its session for every batch cost a few milliseconds each and a new TCP connection
    (and TLS handshake, against the real API) every hundred messages. A process that forks or a configuration that
    changes (tests, a new token) gets a new one. A connection left idle longer than ``IDLE_SECONDS`` is closed
    before the next batch rather than reused: a provider closes idle connections on its side, and a send on a
    connection closed in the meantime would fail with no answer, counted as a possibly accepted message.
    """

    IDLE_SECONDS = 15.0
    _local = threading.local()

    def __init__(self, key: tuple, origin: str, timeout: float) -> None:
        from twilio.rest import Client

        self.key, self.origin = key, origin
        self.http_client = _rebased_http_client(origin, timeout)
        # The Messages resource is looked up once: the SDK imports its whole REST API module tree on first use
        # (a third of a second), which a worker then pays with its first batch, not in the middle of a send.
        self.messages = Client(key[1], key[2], http_client=self.http_client).messages
        self.last_used = time.monotonic()

    @classmethod
    def current(cls, sid: str, token: str, origin: str, timeout: float) -> _TwilioSession:
        key = (os.getpid(), sid, token, origin, timeout)
        session = getattr(cls._local, "session", None)
        if session is None or session.key != key:
            if session is not None and session.key[0] == key[0]:
                session.http_client.session.close()
            session = cls._local.session = cls(key, origin, timeout)
        return session

    def read_environment(self) -> None:
        """Read the proxy and CA-bundle variables (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) once per batch.

        requests would read them on every request, scanning the whole environment twice: a tenth of a message's
        cost. The client talks to one origin, so the session keeps what they say for the batch.
        """
        client = self.http_client
        client.session.trust_env, client.session.verify = True, True  # what the environment says, not last batch's
        environment = client.session.merge_environment_settings(self.origin, {}, None, None, None)
        client.session.trust_env = False
        client.proxy = environment["proxies"]
        client.session.verify = environment["verify"]

    def drop_if_idle(self) -> None:
        if time.monotonic() - self.last_used > self.IDLE_SECONDS:
            self.http_client.session.close()


def _rebased_http_client(origin: str, timeout: float):
    """The SDK's HTTP client, quiet, with a timeout, sending what it addresses to api.twilio.com to ``origin``."""
    from requests import Request
    from twilio.http.http_client import TwilioHttpClient
    from twilio.http.response import Response

    class RebasedHttpClient(TwilioHttpClient):
        def request(
            self, method, url, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False
        ):
            """The SDK's request, without what it adds on every call for its own tests and logs (a copy of the
            request kept, every header formatted for a logger that drops it) or that the session already knows
            (the proxies, read once per batch)."""
            if url.startswith(TWILIO_API):
                url = origin.rstrip("/") + url[len(TWILIO_API) :]
            body = {"json": data} if headers and "json" in headers.get("Content-Type", "") else {"data": data}
            request = Request(method.upper(), url, params=params, headers=headers, auth=auth, **body)
            answer = self.session.send(
                self.session.prepare_request(request),
                allow_redirects=allow_redirects,
                timeout=timeout or self.timeout,
                proxies=self.proxy,
                verify=self.session.verify,
            )
            return Response(answer.status_code, answer.text, answer.headers)

    return RebasedHttpClient(timeout=timeout, logger=_sdk_logger)


def get_sms_backend(path: str | None = None) -> BaseSmsBackend:
    """An instance of the configured backend (``CARTWATCH_SMS_BACKEND``), or of the one ``path`` names."""
    return import_string(path or settings.CARTWATCH_SMS_BACKEND)()
