"""The FHIR Bulk Data Access (v2) client side: kick-off, status polling, the manifest, the files.

Every request carries the connection's bearer token (files only when the manifest says ``requiresAccessToken``);
a 401 before the token's time is answered by asking the token endpoint once more. Files are streamed to disk,
never held in memory whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests
from django.conf import settings
from django.utils.dateparse import parse_datetime

from surveillance.imports.pull.errors import ExportGone, PullError
from surveillance.imports.pull.http import TRANSIENT_STATUSES, retry_after_seconds, send
from surveillance.imports.pull.smart_auth import access_token, token_forget
from surveillance.models import EhrConnection
from surveillance.models.ehr_pull import BULK_RESOURCE_TYPES

#: How long to wait between polls when the server gives no Retry-After, and at least whatever it gives.
DEFAULT_POLL_SECONDS = 10.0
MIN_POLL_SECONDS = 1.0
CHUNK_BYTES = 64 * 1024
#: An issue code of FHIR's IssueType vocabulary (lower-case words joined by hyphens).
_ISSUE_CODE = re.compile(r"[a-z][a-z-]{0,39}")


@dataclass(frozen=True)
class Poll:
    """What the status URL said: the manifest once the export is complete, else when to ask again."""

    manifest: dict | None
    retry_after: float = DEFAULT_POLL_SECONDS
    progress: str = ""


def fhir_instant(moment: dt.datetime) -> str:
    """A FHIR ``instant`` in UTC, as ``_since`` takes it."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def manifest_read(manifest: object) -> tuple[dt.datetime, list[dict]]:
    """The manifest's ``transactionTime`` and its output files in import order (Patients first, then the types in
    ``BULK_RESOURCE_TYPES``' order, others last), each as a progress record ``{type, url, lines_done, done}``."""
    if not isinstance(manifest, dict):
        raise PullError("the export's manifest is not a JSON object")
    moment = parse_datetime(str(manifest.get("transactionTime", "")))
    if moment is None or moment.tzinfo is None:
        raise PullError("the export's manifest has no transactionTime with a time zone")
    output = manifest.get("output")
    if not isinstance(output, list) or not all(
        isinstance(item, dict) and isinstance(item.get("type"), str) and isinstance(item.get("url"), str)
        for item in output
    ):
        raise PullError("the export's manifest has no list of output files with type and url")
    rank = {name: index for index, name in enumerate(BULK_RESOURCE_TYPES)}
    ordered = sorted(output, key=lambda item: rank.get(item["type"], len(rank)))
    return moment, [{"type": item["type"], "url": item["url"], "lines_done": 0, "done": False} for item in ordered]


def outcome_text(response: requests.Response) -> str:
    """The code of an OperationOutcome answer's first issue (``throttled``, ``too-costly``, ``not-found``...).

    Only FHIR's code, never the issue's free text (``diagnostics``, ``details.text``): servers quote there the
    resources they failed on, and the run's error, shown in the admin, holds no patient data.
    """
    try:
        code = response.json()["issue"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return f": {code}" if isinstance(code, str) and _ISSUE_CODE.fullmatch(code) else ""


class BulkClient:
    """A connection's session with its EHR for one pull attempt."""

    def __init__(self, connection: EhrConnection) -> None:
        self.connection = connection
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "CAR-T Watch bulk pull"

    def __enter__(self) -> BulkClient:
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()

    def _authorized(self, method: str, url: str, *, what: str, headers: dict, **kwargs) -> requests.Response:
        for fresh in (False, True):
            if fresh:
                token_forget(self.connection)
            token = access_token(self.connection, self.session)
            response = send(
                self.session, method, url, what=what, headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs
            )
            if response.status_code != 401:
                return response
            response.close()
        raise PullError(f"{what}: the EHR refused the access token (HTTP 401)")

    def kick_off(self, since: dt.datetime | None) -> tuple[str, str]:
        """Ask for an export; returns the kick-off URL and the status URL to poll."""
        base = self.connection.fhir_base_url.rstrip("/")
        group = self.connection.group_id
        url = f"{base}/Group/{group}/$export" if group else f"{base}/Patient/$export"
        params = {"_type": ",".join(self.connection.resource_types)}
        if since is not None:
            params["_since"] = fhir_instant(since)
        response = self._authorized(
            "GET",
            url,
            what="the export kick-off",
            params=params,
            headers={"Accept": "application/fhir+json", "Prefer": "respond-async"},
        )
        if response.status_code != 202:
            raise PullError(f"the export kick-off was refused (HTTP {response.status_code}{outcome_text(response)})")
        location = response.headers.get("Content-Location", "").strip()
        if not location:
            raise PullError("the export kick-off answered 202 without a Content-Location")
        return response.url, urljoin(response.url, location)

    def poll(self, status_url: str) -> Poll:
        """Ask how the export is going: 202 (still running) or 200 (the manifest)."""
        response = self._authorized(
            "GET", status_url, what="the export's status", headers={"Accept": "application/json"}
        )
        code = response.status_code
        if code == 202:
            progress = response.headers.get("X-Progress", "")[:200]
            wait = max(retry_after_seconds(response.headers, DEFAULT_POLL_SECONDS), MIN_POLL_SECONDS)
            return Poll(None, wait, progress)
        if code == 200:
            try:
                return Poll(response.json())
            except ValueError:
                raise PullError("the export's manifest is not JSON") from None
        if code in (404, 410):
            raise ExportGone(f"the export's status URL is no longer valid (HTTP {code})")
        if 400 <= code < 500 and code not in TRANSIENT_STATUSES:  # a 429 that outlasted the retries is not that
            raise ExportGone(f"the EHR reports the export failed (HTTP {code}{outcome_text(response)})")
        raise PullError(f"the export's status: HTTP {code}{outcome_text(response)}")

    def release(self, status_url: str) -> None:
        """Tell the EHR the export's files are no longer needed (a DELETE on the status URL, as the specification
        lets a client do once it has them). Best effort: the files are imported whatever it answers."""
        with contextlib.suppress(PullError):
            self._authorized("DELETE", status_url, what="the export's release", headers={}).close()

    def download(self, url: str, path: Path, *, with_token: bool, what: str) -> int:
        """Stream one output file to ``path`` (fetched again whole if cut short); returns its size in bytes."""
        limit = settings.CARTWATCH["EHR_PULL_MAX_FILE_BYTES"]
        size = 0

        def read(response: requests.Response) -> None:
            nonlocal size
            size = 0
            with open(path, "wb") as handle:
                for chunk in response.iter_content(CHUNK_BYTES):
                    size += len(chunk)
                    if size > limit:
                        raise PullError(f"{what}: larger than {limit} bytes")
                    handle.write(chunk)

        headers = {"Accept": "application/fhir+ndjson"}
        if with_token:
            response = self._authorized("GET", url, what=what, headers=headers, stream=True, read=read)
        else:
            response = send(self.session, "GET", url, what=what, headers=headers, stream=True, read=read)
        if response.status_code in (404, 410):
            raise ExportGone(f"{what}: no longer available (HTTP {response.status_code})")
        if response.status_code != 200:
            raise PullError(f"{what}: HTTP {response.status_code}{outcome_text(response)}")
        return size
