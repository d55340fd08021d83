"""Windowed linear regression: fit a line to the last ``window`` buckets and extend it."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from tidal.forecast.base import Forecaster


class LinearRegression(Forecaster):
    """Ordinary least squares of value on bucket index over the last ``window`` buckets.

    ``ŷ_{t+h} = a + b·(t+h)``. With a single bucket in, it forecasts that value. On an exactly
    linear series the forecast is exact; the window bounds how far back a change is remembered.
    """

    kind = "linear"

    def __init__(self, window: int, step_s: float = 1.0) -> None:
        super().__init__(step_s)
        if int(window) != window or window < 2:
            raise ValueError(f"window must be an integer >= 2 buckets, got {window!r}")
        self.window = int(window)
        self._values: deque[float] = deque(maxlen=self.window)

    @property
    def ready(self) -> bool:
        return len(self._values) >= 2

    def _structure(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "window": self.window}

    def _observe(self, y: float) -> None:
        self._values.append(y)

    def coefficients(self) -> tuple[float, float]:
        """``(intercept, slope)`` with the last bucket at index 0 (slope per bucket)."""
        y = np.asarray(self._values, dtype=float)
        n = len(y)
        if n == 0:
            raise ValueError("no data")
        if n == 1:
            return float(y[0]), 0.0
        # Centred closed form: exact and well conditioned, no matrix solve.
        x = np.arange(n, dtype=float) - (n - 1)
        xm, ym = x.mean(), y.mean()
        slope = float(np.dot(x - xm, y - ym) / np.dot(x - xm, x - xm))
        return float(ym - slope * xm), slope

    def _predict(self, h: int) -> float:
        intercept, slope = self.coefficients()
        return intercept + slope * h

    def _model_state(self) -> dict[str, Any]:
        return {"values": list(self._values)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self._values = deque((float(v) for v in state["values"]), maxlen=self.window)
