"""Go integer semantics and the tolerance band, shared by every HPA module.

The Kubernetes controller computes in ``int32``/``int64`` and ``float64``. Python ``float`` is IEEE
double like Go's ``float64``; Python ``int`` is unbounded, so the few places where Go truncates,
wraps or saturates are spelled out here (spec §7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)
MAX_INT64 = 2**63 - 1

#: Go's zero ``time.Time`` (0001-01-01) as seconds on tidal's clock: far enough in the past that
#: every window or period added to it still lies before any realistic "now" (spec §1.1).
ZERO_TIME = -1e11


def clamp_int32(value: int) -> int:
    """Saturate to the int32 range (Go would overflow; the HPA code clamps where it matters)."""
    return max(MIN_INT32, min(MAX_INT32, value))


def ceil_int32(value: float) -> int:
    """``int32(math.Ceil(value))`` with saturation instead of Go's undefined overflow."""
    if math.isnan(value):
        return 0
    if value >= MAX_INT32:
        return MAX_INT32
    if value <= MIN_INT32:
        return MIN_INT32
    return math.ceil(value)


def trunc_int32(value: float) -> int:
    """``int32(value)``: truncation toward zero, saturated."""
    if math.isnan(value):
        return 0
    if value >= MAX_INT32:
        return MAX_INT32
    if value <= MIN_INT32:
        return MIN_INT32
    return math.trunc(value)


def go_div(a: int, b: int) -> int:
    """Go integer division (truncates toward zero; Python's ``//`` floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def wrap_int64(value: int) -> int:
    """Two's-complement wrap of an integer to int64, as Go's ``+`` does on overflow."""
    return (value + 2**63) % 2**64 - 2**63


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Per-direction tolerance (KEP-4951): no change while ``1-down <= ratio <= 1+up``.

    Both ends are inclusive and the bounds are computed in float64 exactly as written, which is
    not the same as the pre-1.33 ``abs(1 - ratio) <= tolerance`` at the boundary (spec §4.1).
    """

    scale_down: float = 0.1
    scale_up: float = 0.1

    def is_within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)
