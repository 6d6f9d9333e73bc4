"""Structured logs: one JSON object per line, with the fields gathered on the way.

Delivery code logs one line per outcome with `extra={...}` (webhook_id,
endpoint_id, tenant, ...); this formatter puts those fields at the top level.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Send hookstream's logs to stderr as JSON lines; quiet the chatty libraries."""
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries(root.level)


# Libraries whose debug lines are noise, and in aiokafka's case hold record
# values: the endpoints topic carries signing secrets.
NOISY = ("aiokafka", "aiohttp.access")


def quiet_libraries(level: int) -> None:
    """Keep the chatty libraries at WARNING or above, whatever hookstream's level."""
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
