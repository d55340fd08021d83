"""Structured logging for the serving processes.

Code logs with ``extra={"event": "worker_ready", "worker": "w3", ...}``: plain JSON-able fields
next to the message. :class:`JsonFormatter` writes one JSON object per line with those fields
(for log shippers); :class:`KeyValueFormatter` appends them as ``key=value`` for people.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.LogRecord("x", logging.INFO, "x", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (unix s), level, logger, message and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(extra_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class KeyValueFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` — the CLI's format plus the structured fields."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = extra_fields(record)
        if fields:
            text += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        return text


LogFormat = Literal["text", "json"]


def configure_logging(fmt: LogFormat = "text", level: int = logging.INFO, stream=None) -> None:
    """Route the root logger to ``stream`` (stderr) in the chosen format, replacing its handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
