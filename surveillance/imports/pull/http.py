"""One HTTP request to the EHR, tried again (with tenacity) while the failure is one that passes: a 5xx, a 429 or
408, a timeout, a refused or dropped connection, a body cut short. Waits double from
``EHR_PULL_HTTP_RETRY_SECONDS``, or follow the server's ``Retry-After`` when it gives one."""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Mapping

import requests
from django.conf import settings
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from surveillance.imports.pull.errors import PullError

#: Answers that say "not now" rather than "no": the same request may succeed a moment later.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: No single wait is longer than this, whatever a server's Retry-After says (a worker must not sleep for hours).
MAX_WAIT_SECONDS = 120.0


def _cfg(name: str):
    return settings.CARTWATCH[name]


class _Transient(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


_PASSING = (_Transient, requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def retry_after_seconds(headers: Mapping[str, str], default: float) -> float:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now, within ``MAX_WAIT_SECONDS``."""
    raw = (headers.get("Retry-After") or "").strip()
    if not raw:
        return default
    if raw.isdigit():
        seconds = float(raw)
    else:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return default
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_WAIT_SECONDS)


def _wait(retry_state) -> float:
    backoff = _cfg("EHR_PULL_HTTP_RETRY_SECONDS") * 2 ** (retry_state.attempt_number - 1)
    failure = retry_state.outcome.exception()
    if isinstance(failure, _Transient):
        return retry_after_seconds(failure.response.headers, min(backoff, MAX_WAIT_SECONDS))
    return min(backoff, MAX_WAIT_SECONDS)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    read: Callable[[requests.Response], None] | None = None,
    **kwargs,
) -> requests.Response:
    """Send a request, trying again while it fails in a way that passes; return the final answer.

    ``read(response)`` consumes a successful (2xx) streamed body inside the attempt, so that a body cut short is
    fetched again whole. A transient status that outlasted every attempt is returned for the caller to report; a
    connection that never answered raises ``PullError`` naming ``what`` was asked.
    """
    attempts = max(1, _cfg("EHR_PULL_HTTP_ATTEMPTS"))
    retrying = Retrying(
        stop=stop_after_attempt(attempts), wait=_wait, retry=retry_if_exception_type(_PASSING), reraise=True
    )
    kwargs.setdefault("timeout", _cfg("EHR_PULL_TIMEOUT_SECONDS"))
    try:
        for attempt in retrying:
            with attempt:
                response = session.request(method, url, **kwargs)
                if response.status_code in TRANSIENT_STATUSES:
                    response.close()
                    raise _Transient(response)
                if read is not None and 200 <= response.status_code < 300:
                    try:
                        read(response)
                    finally:
                        response.close()
                return response
    except _Transient as exc:
        return exc.response
    except requests.RequestException as exc:
        raise PullError(f"{what}: failed {attempts} times ({type(exc).__name__})") from None
    raise AssertionError("unreachable: tenacity either returns an attempt's value or raises")
