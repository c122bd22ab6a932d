"""Gunicorn settings every web command loads (``--config python:config.gunicorn``: the image, compose, bin/serve).

Gunicorn's default access-log line holds the whole request line and the Referer, query strings included: admin
searches (``?q=``) and API filters (``?mrn=``) would put names and MRNs in the log. This format logs the path
without its query string, and no Referer.

Each worker measures its own requests for ``/metrics``: prometheus_client's multi-process mode keeps them in files
under ``PROMETHEUS_MULTIPROC_DIR`` (set here, under the var directory, before any worker starts), emptied when the
server starts, with a dead worker's files marked as such.
"""

import os
import shutil
from pathlib import Path

_METRICS_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(Path(os.environ.get("CARTWATCH_VAR_DIR", "var")) / "prometheus")
)

# Every request is bounded: work that may take longer (a large import, a whole export) runs as a job or in pages,
# so a worker still busy after this long is stuck and is replaced (gunicorn's implicit 30 s was never chosen).
timeout = int(os.environ.get("CARTWATCH_WEB_TIMEOUT_SECONDS", "60"))
graceful_timeout = 30

# remote address, time, method, path (no query string), protocol, status, bytes, duration in microseconds
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(D)s'


def on_starting(server) -> None:
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    Path(_METRICS_DIR).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
