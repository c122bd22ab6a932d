"""A FHIR Bulk Data server on loopback, in a thread: the SMART token endpoint, ``$export`` kick-off, status polling
with Retry-After, the manifest, and NDJSON files that need the bearer token.

The token endpoint checks the client assertion as an EHR does: the signature against the registered public key,
``iss`` = ``sub`` = the client id, ``aud`` = the token URL, ``exp`` at most five minutes ahead, a ``jti`` never seen
before, the ``kid``. Tests say which file downloads fail next (``fail``: a 500, or a connection dropped half way
through the body), what the next polls answer (``status_codes``) and the free text of those failures
(``diagnostics``), and read what the server saw (kick-offs with their parameters, polls, downloads per file).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from surveillance.imports.pull.smart_auth import ASSERTION_TYPE
from tests.imports.synthea import _lines, car_t_procedure

CLIENT_ID = "cartwatch-backend"
KEY_ID = "cartwatch-key-1"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def export_files(infusions: int = 4, encounters: int = 200) -> dict[str, bytes]:
    """A Synthea export as an EHR would send it: the 11 Patients, every real Procedure (none CAR-T) plus a CAR-T
    infusion for ``infusions`` living patients, every Condition, and ``encounters`` Encounters."""
    patients = _lines("Patient.000.ndjson")
    living = [json.loads(line)["id"] for line in patients if "deceasedDateTime" not in json.loads(line)]
    cart = [json.dumps(car_t_procedure(f"cart-{n}", pid)) for n, pid in enumerate(living[:infusions])]
    return {
        "Patient.000.ndjson": _ndjson(patients),
        "Procedure.000.ndjson": _ndjson([*_lines("Procedure.000.ndjson"), *cart]),
        "Condition.000.ndjson": _ndjson(_lines("Condition.000.ndjson")),
        "Encounter.000.ndjson": _ndjson(_lines("Encounter.000.ndjson")[:encounters]),
    }


def _ndjson(lines) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


def line_count(files: dict[str, bytes]) -> int:
    return sum(body.count(b"\n") for body in files.values())


@dataclass
class BulkServer:
    public_key: object
    algorithm: str
    files: dict[str, bytes]
    polls_before_ready: int = 1
    retry_after: int = 1
    kickoffs: list[dict] = field(default_factory=list)
    polls: list[float] = field(default_factory=list)
    poll_counts: Counter = field(default_factory=Counter)
    downloads: Counter = field(default_factory=Counter)
    token_requests: int = 0
    tokens: set[str] = field(default_factory=set)
    jtis: set[str] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)
    fail: dict[str, list[str]] = field(default_factory=dict)
    #: the free text of the OperationOutcome a failed poll or download answers with (EHRs quote what they failed on)
    diagnostics: str = ""
    status_gone: bool = False
    status_codes: list[int] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    transaction_times: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.root = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base(self) -> str:
        return f"{self.root}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root}/auth/token"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def outcome(self, code: str) -> dict:
        """The OperationOutcome of a failure: its code, and ``diagnostics`` when the test gives some."""
        issue = {"code": code, **({"diagnostics": self.diagnostics} if self.diagnostics else {})}
        return {"resourceType": "OperationOutcome", "issue": [issue]}

    # --- what the EHR does ---------------------------------------------------------------------------------------
    def token_answer(self, form: dict[str, str]) -> tuple[int, dict]:
        self.token_requests += 1
        try:
            if form.get("grant_type") != "client_credentials":
                raise ValueError("grant_type")
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise ValueError("client_assertion_type")
            assertion = form.get("client_assertion", "")
            if jwt.get_unverified_header(assertion).get("kid") != KEY_ID:
                raise ValueError("kid")
            claims = jwt.decode(
                assertion,
                self.public_key,
                algorithms=[self.algorithm],
                audience=self.token_url,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
            if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
                raise ValueError("iss and sub must be the client id")
            if claims["exp"] > time.time() + 300:
                raise ValueError("exp more than five minutes ahead")
            if claims["jti"] in self.jtis:
                raise ValueError("jti replayed")
            self.jtis.add(claims["jti"])
        except (ValueError, jwt.PyJWTError) as exc:
            self.refusals.append(str(exc) or type(exc).__name__)
            return 401, {"error": "invalid_client", "error_description": "client assertion refused"}
        token = secrets.token_urlsafe(16)
        self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 300, "scope": form.get("scope")}

    def kickoff_answer(self, query: dict[str, str]) -> tuple[int, dict, dict]:
        self.kickoffs.append(query)
        job = str(len(self.kickoffs))
        self.transaction_times.append(dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        return 202, {"Content-Location": f"{self.root}/status/{job}"}, {}

    def status_answer(self, job: str) -> tuple[int, dict, dict]:
        self.polls.append(time.monotonic())
        if self.status_codes:  # what the test asks the next polls to answer instead
            return self.status_codes.pop(0), {}, self.outcome("throttled")
        if self.status_gone:
            return 404, {}, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
        self.poll_counts[job] += 1
        if self.poll_counts[job] <= self.polls_before_ready:  # each export is still being prepared at first
            return 202, {"Retry-After": str(self.retry_after), "X-Progress": "preparing the export"}, {}
        names = sorted(self.files, key=lambda name: name.startswith("Patient"))  # Patient last: the client orders
        manifest = {
            "transactionTime": self.transaction_times[int(job) - 1],
            "request": f"{self.base}/Patient/$export",
            "requiresAccessToken": True,
            "output": [
                {
                    "type": name.split(".")[0],
                    "url": f"{self.root}/files/{job}/{name}",
                    "count": self.files[name].count(b"\n"),
                }
                for name in names
            ],
            "error": [],
        }
        return 200, {}, manifest


def _handler(server: BulkServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict | bytes = b"", headers: dict | None = None, ctype: str = "") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", ctype or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _bearer_ok(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in server.tokens:
                return True
            self._send(401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]})
            return False

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if urlsplit(self.path).path != "/auth/token":
                return self._send(404)
            status, body = server.token_answer(form)
            self._send(status, body)

        def do_DELETE(self) -> None:
            if self._bearer_ok():
                server.released.append(urlsplit(self.path).path)
                self._send(202)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if not self._bearer_ok():
                return None
            if url.path.endswith("/$export"):
                if self.headers.get("Prefer") != "respond-async" or "fhir+json" not in self.headers.get("Accept", ""):
                    return self._send(400, {"resourceType": "OperationOutcome", "issue": [{"code": "invalid"}]})
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                status, headers, body = server.kickoff_answer({**query, "path": url.path})
                return self._send(status, body or b"", headers)
            if url.path.startswith("/status/"):
                status, headers, body = server.status_answer(url.path.rsplit("/", 1)[1])
                return self._send(status, body or b"", headers)
            if url.path.startswith("/files/"):
                name = url.path.rsplit("/", 1)[1]
                server.downloads[name] += 1
                failures = server.fail.get(name) or []
                kind = failures.pop(0) if failures else ""
                body = server.files[name]
                if kind == "500":
                    return self._send(500, server.outcome("exception"))
                if kind == "drop":  # the headers promise the whole file; half of it comes, then the connection ends
                    self.send_response(200)
                    self.send_header("Content-Type", "application/fhir+ndjson")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._send(200, body, ctype="application/fhir+ndjson")
            return self._send(404)

    return Handler
