"""Empirical forecast errors at a fixed lead time, for a safety margin.

A scaler that acts ``H`` seconds ahead cares about the error of forecasts made ``H`` ago, not the
one-step error. :class:`ForecastErrors` keeps the forecasts it was told about until the bucket
they target completes, then records the signed error ``actual − forecast`` (or that divided by
the forecast), and answers quantiles over a sliding time window. The ``q``-quantile of the signed
error, added to a forecast, estimates the ``q``-quantile of the actual value.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

#: Relative errors divide by at least this, so a zero forecast does not blow them up.
_REL_FLOOR = 1e-9


class ForecastErrors:
    """Signed errors of forecasts matched to the buckets they targeted, over a time window.

    ``relative=True`` records ``(actual − forecast) / max(|forecast|, floor)``; otherwise
    ``actual − forecast``. Buckets are identified by their end time on a grid of ``step_s``.
    """

    def __init__(self, step_s: float, window_s: float, relative: bool = True, rel_floor: float = _REL_FLOOR) -> None:
        if not step_s > 0:
            raise ValueError(f"step_s must be > 0, got {step_s!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.step_s = float(step_s)
        self.window_s = float(window_s)
        self.relative = bool(relative)
        self.rel_floor = float(rel_floor)
        self._pending: dict[int, float] = {}  # bucket index -> forecast
        self._errors: deque[tuple[float, float]] = deque()  # (bucket end, error)

    def _key(self, end: float) -> int:
        return round(end / self.step_s)

    def expect(self, end: float, forecast: float) -> None:
        """Remember a forecast for the bucket ending at ``end``; the first one for a bucket wins,
        so errors measure the longest lead time the caller used."""
        if math.isfinite(forecast):
            self._pending.setdefault(self._key(end), float(forecast))

    def resolve(self, end: float, actual: float) -> float | None:
        """The bucket ending at ``end`` completed with ``actual``: record and return its error.

        Forecasts for buckets at or before ``end`` that were never resolved are dropped.
        """
        key = self._key(end)
        forecast = self._pending.pop(key, None)
        for stale in [k for k in self._pending if k < key]:
            del self._pending[stale]
        if forecast is None:
            return None
        error = actual - forecast
        if self.relative:
            error /= max(abs(forecast), self.rel_floor)
        self._errors.append((float(end), float(error)))
        horizon = end - self.window_s
        while self._errors and self._errors[0][0] <= horizon:
            self._errors.popleft()
        return error

    def __len__(self) -> int:
        return len(self._errors)

    def errors(self) -> np.ndarray:
        """Recorded errors in the window, oldest first."""
        return np.array([e for _, e in self._errors], dtype=float)

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile of the recorded errors (linear interpolation), ``None`` if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must lie in [0, 1], got {q!r}")
        if not self._errors:
            return None
        return float(np.quantile(self.errors(), q))

    def state_dict(self) -> dict[str, Any]:
        return {
            "pending": [[k, v] for k, v in sorted(self._pending.items())],
            "errors": [[t, e] for t, e in self._errors],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = {int(k): float(v) for k, v in state.get("pending", [])}
        self._errors = deque((float(t), float(e)) for t, e in state.get("errors", []))
