"""One JSON object per log line (``CARTWATCH_LOG_FORMAT=json``), for log collectors that index fields."""

from __future__ import annotations

import datetime as dt
import json
import logging


class JsonFormatter(logging.Formatter):
    """Time, level, logger and message, plus the exception text when there is one. Messages carry ids only (the
    project's logging rule), so nothing here filters: it only changes the shape."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
