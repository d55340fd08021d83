"""Go-compatible numeric helpers, so KPA arithmetic rounds exactly as Knative's does.

Python's :func:`round` rounds half to even; Go's ``math.Round`` rounds half away from zero, and
Knative's tests depend on the difference (``roundToNDigits(3, 1.2345) == 1.235``).
"""

from __future__ import annotations

import math

#: One second in nanoseconds (Go's ``time.Second``).
SECOND_NS = 1_000_000_000


def go_round(x: float) -> float:
    """Go ``math.Round``: nearest integer, halves away from zero (sign of zero kept)."""
    if not math.isfinite(x):
        return x
    whole = math.trunc(x)
    # x - trunc(x) is exact in binary floating point, so the half test is exact too.
    if abs(x - whole) >= 0.5:
        whole += 1 if x > 0 else -1
    return math.copysign(float(whole), x)


def round_to_n_digits(n: int, x: float) -> float:
    """Knative ``roundToNDigits``: ``math.Round(x * 10^n) / 10^n``."""
    p = 10.0**n
    return go_round(x * p) / p


def seconds_to_ns(seconds: float) -> int:
    """A duration in whole nanoseconds, as Go's ``time.Duration`` holds it."""
    return int(go_round(seconds * SECOND_NS))


def round_duration_to_seconds(ns: int) -> int:
    """Go ``Duration.Round(time.Second)`` on nanoseconds: halves away from zero."""
    q, r = divmod(abs(ns), SECOND_NS)
    if 2 * r >= SECOND_NS:
        q += 1
    return (q if ns >= 0 else -q) * SECOND_NS
