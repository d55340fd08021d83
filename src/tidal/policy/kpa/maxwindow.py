"""Sliding maximum over time slots: the KPA's scale-down delay window.

Upstream ``pkg/autoscaler/aggregation/max`` (an "ascending minima" deque turned upside down):
``size = ceil(duration / granularity)`` slots, slot of time ``t`` = ``floor(t / granularity)``,
and :meth:`MaxTimeWindow.current` is the largest value recorded in the last ``size`` slots,
including the current one.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any


class MaxTimeWindow:
    """Max over the last ``ceil(duration / granularity)`` slots of recorded values."""

    def __init__(self, duration: float, granularity: float = 2.0) -> None:
        if granularity <= 0:
            raise ValueError(f"granularity must be positive, got {granularity}")
        self.duration = float(duration)
        self.granularity = float(granularity)
        self.size = max(1, int(math.ceil(duration / granularity)))
        # (slot index, value), values strictly decreasing from front to back.
        self._maxima: deque[tuple[int, float]] = deque()

    def record(self, now: float, value: float) -> None:
        """Record ``value`` at time ``now`` (times must not go backwards by a whole slot)."""
        index = math.floor(now / self.granularity)
        maxima = self._maxima
        # A smaller-or-equal older value can never be the maximum again.
        while maxima and value >= maxima[-1][1]:
            maxima.pop()
        # Forget values that have slid out of the window.
        while maxima and index - maxima[0][0] >= self.size:
            maxima.popleft()
        # Several values in one slot: keep the largest.
        if maxima and maxima[-1][0] == index:
            value = max(value, maxima[-1][1])
            maxima.pop()
        maxima.append((index, value))

    def current(self) -> float:
        """The maximum over the window (0 before the first record, as upstream)."""
        return self._maxima[0][1] if self._maxima else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"duration": self.duration, "granularity": self.granularity,
                "maxima": [[i, v] for i, v in self._maxima]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._maxima = deque((int(i), float(v)) for i, v in state.get("maxima", []))
