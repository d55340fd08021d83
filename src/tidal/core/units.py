"""Parsing of human-friendly quantities: durations (``90s``, ``5m``, ``2h``) and rates (``120/s``).

Time in tidal is always seconds (float); rates are per second; money is per hour.
"""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|min|s|m|h|d)")
_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 1 / 60.0, "min": 1 / 60.0, "h": 1 / 3600.0}


def parse_duration(value: object) -> float:
    """Return a duration in seconds.

    Accepts a number (seconds) or a string such as ``"90s"``, ``"1.5m"``, ``"2h"``, ``"250ms"``,
    or a compound ``"1h30m"``. Raises ``ValueError`` naming the expected forms otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 90s, 5m or 2h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        # Keep a sign so "-5s" reaches the field's own bound check ("must be > 0").
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-").strip()
        try:
            seconds = float(text)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_PART.finditer(text):
                if match.start() != pos or not text:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f"expected a duration such as 90s, 5m, 2h or 250ms, got {value!r}"
                ) from None
        seconds *= sign
    else:
        raise ValueError(f"expected a duration such as 90s, 5m or 2h, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    return seconds


def parse_rate(value: object) -> float:
    """Return a rate per second from a number or a string such as ``"120/s"`` or ``"600/min"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 120/s, got {value!r}")
    if isinstance(value, (int, float)):
        rate = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        number, _, unit = text.partition("/")
        try:
            rate = float(number) * (_RATE_UNITS[unit] if unit else 1.0)
        except (ValueError, KeyError):
            raise ValueError(f"expected a rate such as 120/s or 600/min, got {value!r}") from None
    else:
        raise ValueError(f"expected a rate such as 120/s, got {value!r}")
    if not math.isfinite(rate):
        raise ValueError(f"expected a finite rate, got {value!r}")
    return rate


def format_duration(seconds: float) -> str:
    """Format seconds compactly for tables and logs (``1h30m``, ``45s``, ``250ms``)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:.4g}m"
    return f"{seconds / 3600:.4g}h"
