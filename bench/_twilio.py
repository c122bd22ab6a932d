"""A loopback HTTP server that speaks the part of Twilio's REST API the SDK calls to send an SMS
(``POST /2010-04-01/Accounts/{sid}/Messages.json``), checks the SDK's basic auth, and signs callbacks the way
Twilio does (the SDK's ``RequestValidator``).

The tests, the SMS dispatch benchmark and the drills share it: it lives beside the benchmarks, which import
nothing from the tests. It answers over HTTP/1.1 keep-alive, as Twilio does, so a client's session reuses its
connection and a benchmark measures the provider's round trip, not a TCP handshake per message.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 32
FROM_NUMBER = "+15005550006"
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-f]{32})/Messages\.json$")


class _QuietServer(ThreadingHTTPServer):
    """A client killed mid-request (the workers of the drills are SIGKILLed) resets its connection: not worth a
    traceback on the console."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class TwilioDouble:
    """``messages``: what it accepted (form fields, with the SID it gave). ``answers``: (HTTP status, Twilio error
    code) to answer the next requests with, instead of accepting. ``accept_gate`` cleared: the server stores the
    message, then stalls before answering (it has the message; the client does not know yet)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        #: TCP connections opened to it: a client that keeps its session alive opens one.
        self.connections = 0
        self.answers: deque[tuple[int, int]] = deque()
        self.accept_gate = threading.Event()
        self.accept_gate.set()
        self.stalled_after_accept = threading.Event()
        self.lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # every answer has a Content-Length: the connection stays open
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between them

            def setup(self) -> None:
                super().setup()
                with double.lock:
                    double.connections += 1

            def log_message(self, *args) -> None:  # request lines carry numbers: keep them out of the test log
                pass

            def do_POST(self) -> None:
                match = _MESSAGES.match(self.path)
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the client died mid-request (a killed worker): no message, as at Twilio
                    self.close_connection = True
                    return
                body = body.decode()
                if match is None:
                    return self._json(404, {"code": 20404, "message": "not found", "status": 404})
                expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
                if self.headers.get("Authorization") != expected or match["sid"] != ACCOUNT_SID:
                    return self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
                fields = {k: v[0] for k, v in parse_qs(body).items()}
                with double.lock:
                    answer = double.answers.popleft() if double.answers else None
                if answer is not None:  # Twilio's error messages often quote the number ("The 'To' number ...")
                    status, code = answer
                    message = f"error {code}: the 'To' number {fields.get('To', '')} cannot be reached"
                    return self._json(status, {"code": code, "message": message, "status": status})
                fields["Sid"] = "SM" + uuid.uuid4().hex
                with double.lock:
                    double.messages.append(fields)
                if not double.accept_gate.is_set():
                    double.stalled_after_accept.set()
                    double.accept_gate.wait(60)
                self._json(201, {"sid": fields["Sid"], "status": "queued", "to": fields.get("To"), "body": ""})

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TwilioDouble:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.accept_gate.set()
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[dict]:
        """A copy of what it accepted so far (the server keeps accepting meanwhile)."""
        with self.lock:
            return list(self.messages)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()

    def to(self, number: str) -> list[dict]:
        return [m for m in self.messages if m.get("To") == number]

    @staticmethod
    def sign(url: str, params: dict, token: str = AUTH_TOKEN) -> str:
        """The ``X-Twilio-Signature`` Twilio would send with these fields to that URL."""
        return RequestValidator(token).compute_signature(url, params)

    @staticmethod
    def env(url: str) -> dict[str, str]:
        """The environment that sends SMS through this double with the Twilio backend."""
        return {
            "CARTWATCH_SMS_BACKEND": "surveillance.reminders.sms_backends.TwilioSmsBackend",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_URL": url,
            "CARTWATCH_SMS_TIMEOUT": "5",
        }
