"""Knative's timed float buckets: the stable and panic windows the KPA averages over.

A window of ``window`` seconds is a ring of ``ceil(window / granularity)`` buckets. Values recorded
in the same bucket are summed. Two averages exist, as upstream
(``pkg/autoscaler/aggregation/bucketing.go``):

* :class:`TimedFloat64Buckets` (``linear``): the mean over the buckets written since the first
  write, shrinking the divisor for trailing silence, counting gaps in the middle as zeros, and
  rounded to 6 digits half away from zero;
* :class:`WeightedFloat64Buckets` (``weighted-exponential``): an exponentially weighted sum of the
  buckets, newest first, with no rounding.

Times are float seconds on any non-negative time line; bucket boundaries are
``floor(t / granularity)``. "Never written" is ``None``: time 0 is a real instant. Both classes are
pure (no clock) and round-trip through :meth:`state_dict`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from tidal.policy.kpa.gomath import round_to_n_digits

#: Digits the linear average is rounded to (upstream ``precision``).
PRECISION = 6
#: Lower bound of the smoothing coefficient (upstream ``minExponent``).
MIN_EXPONENT = 0.2
#: The weights of a full window must add up to at least this (upstream ``weightPrecision``).
WEIGHT_PRECISION = 0.9999

Algorithm = Literal["linear", "weighted-exponential"]


def compute_smoothing_coeff(num_buckets: float) -> float:
    """Decay multiplier of the weighted average: ``max(1 - (1 - 0.9999)^(1/nb), 0.2)``."""
    # Go evaluates ``1 - weightPrecision`` as an exact constant, i.e. 1e-4.
    return max(1.0 - math.pow(1e-4, 1.0 / num_buckets), MIN_EXPONENT)


class TimedFloat64Buckets:
    """Ring of time buckets with the linear (partial-window aware) average."""

    algorithm: Algorithm = "linear"

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        if granularity <= 0:
            raise ValueError(f"granularity must be positive, got {granularity}")
        if window < granularity:
            raise ValueError(f"window must be >= granularity, got window={window}, granularity={granularity}")
        self.granularity = float(granularity)
        self.window = float(window)
        self._buckets = [0.0] * self._num_buckets(window)
        # Bucket indices (time // granularity) of the first and last write; None = never.
        self._first: int | None = None
        self._last: int | None = None
        self._total = 0.0

    # ------------------------------------------------------------------ helpers
    def _num_buckets(self, window: float) -> int:
        return int(math.ceil(window / self.granularity))

    def _index(self, t: float) -> int:
        return math.floor(t / self.granularity)

    def _span(self, later: int, earlier: int) -> float:
        """Seconds between two bucket indices."""
        return (later - earlier) * self.granularity

    @property
    def num_buckets(self) -> int:
        return len(self._buckets)

    @property
    def last_write(self) -> float | None:
        """Start time of the most recently written bucket, or ``None``."""
        return None if self._last is None else self._last * self.granularity

    # ------------------------------------------------------------------ API
    def is_empty(self, now: float) -> bool:
        """True when nothing was recorded during the last ``window`` seconds."""
        return self._last is None or self._span(self._index(now), self._last) > self.window

    def record(self, t: float, value: float) -> None:
        """Add ``value`` to the bucket of time ``t``; values older than one window are dropped."""
        b = self._index(t)
        nb = len(self._buckets)
        if self._last != b:
            if self._last is not None and not self._span(b, self._last) + self.window > 0:
                return  # older than a whole window before the last write: ignored upstream too
            if self._first is None or self._first > b:
                self._first = b
            if self._last is None or b > self._last:
                if self._last is None or self._span(b, self._last) >= self.window:
                    # A whole window without writes: start afresh.
                    self._first = b
                    self._buckets = [0.0] * nb
                    self._total = 0.0
                else:
                    # Clear the buckets skipped since the last write (they hold stale values).
                    for i in range(self._last + 1, b + 1):
                        self._total -= self._buckets[i % nb]
                        self._buckets[i % nb] = 0.0
                self._last = b
            # else: an out-of-order write still inside the window adds to its old bucket.
        self._buckets[b % nb] += value
        self._total += value

    def _valid_buckets(self) -> int:
        if self._first is None or self._last is None:
            return len(self._buckets)
        return self._last - self._first + 1

    def window_average(self, now: float) -> float:
        """Average over the valid part of the window ending at ``now`` (6 digits, half away)."""
        if self._last is None:
            return 0.0
        n_idx = self._index(now)
        d = self._span(n_idx, self._last)
        if d <= 0:
            n = min(self._valid_buckets(), len(self._buckets))
            return round_to_n_digits(PRECISION, self._total / n)
        if d < self.window:
            nb = len(self._buckets)
            ret = self._total
            for i in range(self._last + 1, n_idx + 1):
                ret -= self._buckets[i % nb]
            n = min(self._valid_buckets(), nb - (n_idx - self._last))
            return round_to_n_digits(PRECISION, ret / n)
        return 0.0

    def resize_window(self, window: float, wall_now: float) -> None:
        """Change the window length, keeping the newest buckets if data is recent.

        ``wall_now`` stands for upstream's ``time.Now()``: data is kept when the last write lies
        within the *old* window of it.
        """
        if window == self.window:
            return
        if window < self.granularity:
            raise ValueError(f"window must be >= granularity, got window={window}, granularity={self.granularity}")
        nb_new = self._num_buckets(window)
        new = [0.0] * nb_new
        total = 0.0
        if self._last is not None and self._span(self._index(wall_now), self._last) <= self.window:
            nb_old = len(self._buckets)
            idx = self._last
            for _ in range(min(nb_new, nb_old)):
                new[idx % nb_new] = self._buckets[idx % nb_old]
                total += self._buckets[idx % nb_old]
                idx -= 1
            # Upstream uses the *old* bucket count here.
            self._first = self._last - (nb_old - 1)
        else:
            self._first = None
        self.window = float(window)
        self._buckets = new
        self._total = total

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "window": self.window,
            "granularity": self.granularity,
            "buckets": list(self._buckets),
            "first": self._first,
            "last": self._last,
            "total": self._total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if float(state["granularity"]) != self.granularity:
            raise ValueError(f"bucket granularity {state['granularity']} does not match {self.granularity}")
        self.window = float(state["window"])
        self._buckets = [float(v) for v in state["buckets"]]
        self._first = None if state["first"] is None else int(state["first"])
        self._last = None if state["last"] is None else int(state["last"])
        self._total = float(state["total"])


class WeightedFloat64Buckets(TimedFloat64Buckets):
    """The same ring, averaged with exponentially decaying weights (newest bucket heaviest)."""

    algorithm: Algorithm = "weighted-exponential"

    def __init__(self, window: float, granularity: float = 1.0) -> None:
        super().__init__(window, granularity)
        self.smoothing_coeff = compute_smoothing_coeff(math.ceil(window / granularity))

    def window_average(self, now: float) -> float:
        if self.is_empty(now):
            return 0.0
        assert self._last is not None
        nb = len(self._buckets)
        count = nb
        multiplier = self.smoothing_coeff
        n_idx = self._index(now)
        if n_idx > self._last:
            # The empty buckets since the last write weigh in as zeros: skip their weights.
            zeros = n_idx - self._last
            multiplier *= math.pow(1.0 - self.smoothing_coeff, zeros)
            count -= zeros
        ret = 0.0
        start = self._last + nb
        for i in range(count):
            ret += self._buckets[(start - i) % nb] * multiplier
            multiplier *= 1.0 - self.smoothing_coeff
        return ret

    def resize_window(self, window: float, wall_now: float) -> None:
        super().resize_window(window, wall_now)
        self.smoothing_coeff = compute_smoothing_coeff(math.ceil(window / self.granularity))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.smoothing_coeff = compute_smoothing_coeff(math.ceil(self.window / self.granularity))


def new_buckets(algorithm: str, window: float, granularity: float = 1.0) -> TimedFloat64Buckets:
    """Buckets for ``metric-aggregation-algorithm`` (``linear`` or ``weighted-exponential``)."""
    if algorithm == "linear":
        return TimedFloat64Buckets(window, granularity)
    if algorithm in ("weighted-exponential", "weightedExponential"):
        return WeightedFloat64Buckets(window, granularity)
    raise ValueError(f"unknown metric aggregation algorithm {algorithm!r}; use 'linear' or 'weighted-exponential'")
