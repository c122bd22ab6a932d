"""SMART Backend Services: an access token for a connection, by the client-credentials grant with a signed JWT.

The assertion (``iss`` = ``sub`` = the client id, ``aud`` = the token URL, a unique ``jti``, ``exp`` four minutes
ahead: the specification allows at most five) is signed with the connection's private key by PyJWT, RS384 or
ES384, with the ``kid`` the EHR knows the public key by. The token is kept in this process until a minute before
it expires (a quarter of its lifetime when that is shorter), so a pull asks once rather than per request; it is
never written to the database, the cache or a log.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from surveillance.imports.pull.errors import PullError
from surveillance.imports.pull.http import send
from surveillance.models import EhrConnection, SigningAlgorithm

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_SECONDS = 240
TOKEN_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


_tokens: dict[tuple, _Token] = {}
_lock = threading.Lock()


def _key_text(ref: str) -> str:
    if ref.startswith("env:"):
        name = ref.removeprefix("env:")
        text = os.environ.get(name, "")
        if not text.strip():
            raise PullError(f"private key: the environment variable {name} is not set")
        return text
    try:
        return Path(ref).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PullError(f"private key: {ref} cannot be read ({type(exc).__name__})") from None


def signing_key(connection: EhrConnection):
    """The connection's private key (a PEM, or a JWK as JSON), checked against its algorithm."""
    text = _key_text(connection.private_key_ref)
    try:
        if text.lstrip().startswith("{"):
            key = jwt.PyJWK(json.loads(text), algorithm=connection.algorithm).key
        else:
            key = load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, jwt.PyJWKError, jwt.InvalidKeyError):
        raise PullError("private key: not an unencrypted PEM or JWK private key") from None
    if connection.algorithm == SigningAlgorithm.RS384:
        suits = isinstance(key, rsa.RSAPrivateKey)
    else:
        suits = isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1)
    if not suits:
        raise PullError(f"private key: not a private key for {connection.algorithm}")
    return key


def client_assertion(connection: EhrConnection, now: float | None = None) -> str:
    """The signed JWT that authenticates this service to the EHR's token endpoint."""
    now = time.time() if now is None else now
    claims = {
        "iss": connection.client_id,
        "sub": connection.client_id,
        "aud": connection.token_url,
        "iat": int(now),
        "exp": int(now) + ASSERTION_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    headers = {"kid": connection.key_id, "typ": "JWT"}
    return jwt.encode(claims, signing_key(connection), algorithm=connection.algorithm, headers=headers)


def _cache_key(connection: EhrConnection) -> tuple:
    """A token is reused only while every setting that obtained it is unchanged."""
    return (
        connection.pk,
        connection.token_url,
        connection.client_id,
        connection.scopes,
        connection.private_key_ref,
        connection.key_id,
        connection.algorithm,
    )


def access_token(connection: EhrConnection, session: requests.Session) -> str:
    """A bearer token for the connection: the one kept, else a new one from the token endpoint."""
    key = _cache_key(connection)
    with _lock:
        kept = _tokens.get(key)
    if kept is not None and time.monotonic() < kept.renew_at:
        return kept.value
    form = {
        "grant_type": "client_credentials",
        "scope": connection.scopes,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(connection),
    }
    response = send(
        session,
        "POST",
        connection.token_url,
        what="the token endpoint",
        data=form,
        headers={"Accept": "application/json"},
    )
    body = _json(response)
    if response.status_code != 200:
        reason = ": ".join(str(body[name])[:200] for name in ("error", "error_description") if body.get(name))
        raise PullError(
            f"the token endpoint refused the client (HTTP {response.status_code}{', ' if reason else ''}{reason})"
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value or str(body.get("token_type", "")).lower() != "bearer":
        raise PullError("the token endpoint answered without a bearer access_token")
    try:
        lifetime = max(int(body.get("expires_in", 300)), 1)
    except (TypeError, ValueError):
        lifetime = 300
    renew_at = time.monotonic() + lifetime - min(TOKEN_MARGIN_SECONDS, lifetime / 4)
    with _lock:
        _tokens[key] = _Token(value, renew_at)
    return value


def token_forget(connection: EhrConnection) -> None:
    """Drop the kept token (the EHR refused it before its time): the next request asks for a new one."""
    with _lock:
        _tokens.pop(_cache_key(connection), None)


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
