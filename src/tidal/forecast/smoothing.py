"""Exponential smoothing, online: EWMA (simple), Holt (trend) and additive Holt–Winters.

The recursions are those of Hyndman & Athanasopoulos, *Forecasting: principles and practice*
§8 — the ones ``statsmodels.tsa.holtwinters`` implements — so with the same smoothing
parameters and the same initial states the one-step forecasts agree to round-off:

    level    l_t = α (y_t − s_{t−m}) + (1 − α)(l_{t−1} + φ b_{t−1})
    trend    b_t = β (l_t − l_{t−1}) + (1 − β) φ b_{t−1}
    season   s_t = γ (y_t − l_{t−1} − φ b_{t−1}) + (1 − γ) s_{t−m}
    forecast ŷ_{t+h} = l_t + (φ + φ² + … + φ^h) b_t + s_{t−m+1+(h−1) mod m}

Without given initial states the models buffer the first observations and use the simple
initialisation of Hyndman & Athanasopoulos §7.6 (statsmodels' ``_initialization_simple``): first
value and first difference; or mean of the first season, mean seasonal difference between the
first two seasons divided by ``m``, and the first season minus its mean — then replay the
recursion over the buffer.

Forecasts ``h = m, 2m, …`` steps ahead use the season component updated by the latest
observation, as the textbook formula says; statsmodels ≤ 0.15 uses the one a season older there
(statsmodels issue #9538, fixed by PR #10230), the only place the two differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tidal.forecast.base import Forecaster, check_unit_interval


def _damped_sum(phi: float, h: int) -> float:
    """φ + φ² + … + φ^h (= h without damping)."""
    if phi == 1.0:
        return float(h)
    return float(np.sum(phi ** np.arange(1, h + 1)))


class EWMA(Forecaster):
    """Simple exponential smoothing: ``l_t = α y_t + (1 − α) l_{t−1}``; flat forecasts.

    ``initial_level`` defaults to the first observation (statsmodels ``SimpleExpSmoothing`` with
    ``initialization_method="known", initial_level=y[0]``).
    """

    kind = "ewma"

    def __init__(self, alpha: float, step_s: float = 1.0, initial_level: float | None = None) -> None:
        super().__init__(step_s)
        self.alpha = check_unit_interval("alpha", alpha, allow_zero=False)
        self.level: float | None = None if initial_level is None else float(initial_level)

    @property
    def ready(self) -> bool:
        return self.level is not None

    def _observe(self, y: float) -> None:
        level = y if self.level is None else self.level
        self.level = self.alpha * y + (1.0 - self.alpha) * level

    def _predict(self, h: int) -> float:
        assert self.level is not None
        return self.level

    def _model_state(self) -> dict[str, Any]:
        return {"level": self.level}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self.level = None if state["level"] is None else float(state["level"])


class Holt(Forecaster):
    """Holt's linear (optionally damped, ``phi < 1``) trend method.

    Give both ``initial_level`` and ``initial_trend`` (e.g. from :func:`tidal.forecast.fit_ets`)
    or neither: then ``l_0 = y_0``, ``b_0 = y_1 − y_0`` once two buckets are in.
    """

    kind = "holt"

    def __init__(self, alpha: float, beta: float, step_s: float = 1.0, phi: float = 1.0,
                 initial_level: float | None = None, initial_trend: float | None = None) -> None:
        super().__init__(step_s)
        self.alpha = check_unit_interval("alpha", alpha, allow_zero=False)
        self.beta = check_unit_interval("beta", beta)
        self.phi = check_unit_interval("phi", phi, allow_zero=False)
        if (initial_level is None) != (initial_trend is None):
            raise ValueError("give both initial_level and initial_trend, or neither")
        self.level: float | None = None if initial_level is None else float(initial_level)
        self.trend: float | None = None if initial_trend is None else float(initial_trend)
        self._buffer: list[float] = []

    @property
    def ready(self) -> bool:
        return self.level is not None

    def _observe(self, y: float) -> None:
        if self.level is None:
            self._buffer.append(y)
            if len(self._buffer) < 2:
                return
            # statsmodels "simple" initialisation, then the recursion over the buffer.
            self.level, self.trend = self._buffer[0], self._buffer[1] - self._buffer[0]
            buffered, self._buffer = self._buffer, []
            for value in buffered:
                self._step(value)
            return
        self._step(y)

    def _step(self, y: float) -> None:
        assert self.level is not None and self.trend is not None
        a, b, phi = self.alpha, self.beta, self.phi
        prev_level, prev_trend = self.level, self.trend
        self.level = a * y + (1.0 - a) * (prev_level + phi * prev_trend)
        self.trend = b * (self.level - prev_level) + (1.0 - b) * phi * prev_trend

    def _predict(self, h: int) -> float:
        assert self.level is not None and self.trend is not None
        return self.level + _damped_sum(self.phi, h) * self.trend

    def _model_state(self) -> dict[str, Any]:
        return {"level": self.level, "trend": self.trend, "buffer": list(self._buffer)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self.level = None if state["level"] is None else float(state["level"])
        self.trend = None if state["trend"] is None else float(state["trend"])
        self._buffer = [float(v) for v in state["buffer"]]


class HoltWinters(Forecaster):
    """Additive Holt–Winters: level, optional (damped) trend and an additive season of
    ``season_length`` buckets.

    ``beta=None`` drops the trend (ETS(A,N,A)). Without initial states the model initialises
    from the first two seasons (one season without trend) with the simple method.

    Given initial states, ``initial_seasonal[j]`` is the component of the first observation after
    ``j`` others (step-indexed use). Fed through :meth:`update`, the phase is anchored to the
    clock instead: ``initial_seasonal[j]`` belongs to the buckets ending at ``(j + 1 + n·m)·step``
    seconds, so a model seeded from a history (:meth:`tidal.forecast.ETSFit.to_config`) keeps the
    time of day whenever it starts.
    """

    kind = "holt_winters"

    def __init__(self, alpha: float, gamma: float, season_length: int, beta: float | None = None,
                 step_s: float = 1.0, phi: float = 1.0, initial_level: float | None = None,
                 initial_trend: float | None = None, initial_seasonal: Sequence[float] | None = None) -> None:
        super().__init__(step_s)
        if int(season_length) != season_length or season_length < 2:
            raise ValueError(f"season_length must be an integer >= 2, got {season_length!r}")
        self.m = int(season_length)
        self.alpha = check_unit_interval("alpha", alpha, allow_zero=False)
        self.beta = None if beta is None else check_unit_interval("beta", beta)
        self.gamma = check_unit_interval("gamma", gamma)
        self.phi = check_unit_interval("phi", phi, allow_zero=False)
        known = [initial_level is not None, initial_seasonal is not None]
        if self.beta is not None:
            known.append(initial_trend is not None)
        elif initial_trend is not None:
            raise ValueError("initial_trend given but the model has no trend (beta is None)")
        if any(known) and not all(known):
            raise ValueError("give all initial states (level, trend if any, seasonal) or none")
        self.level: float | None = None if initial_level is None else float(initial_level)
        self.trend: float = 0.0 if initial_trend is None else float(initial_trend)
        # season[pos] is s_{t+1-m}: the component that the next observation uses.
        self.season: list[float] = []
        if initial_seasonal is not None:
            if len(initial_seasonal) != self.m:
                raise ValueError(f"initial_seasonal needs {self.m} values, got {len(initial_seasonal)}")
            self.season = [float(v) for v in initial_seasonal]
        self.pos = 0
        self._buffer: list[float] = []

    @property
    def has_trend(self) -> bool:
        return self.beta is not None

    @property
    def ready(self) -> bool:
        return self.level is not None

    def _structure(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "season_length": self.m, "trend": self.has_trend}

    def _anchor(self, end: float) -> None:
        if self.level is not None:  # given initial states: align their phase to the clock
            self.pos = (round(end / self.step_s) - 1) % self.m

    def _observe(self, y: float) -> None:
        if self.level is None:
            self._buffer.append(y)
            need = 2 * self.m if self.has_trend else self.m
            if len(self._buffer) < need:
                return
            self._initialise(np.asarray(self._buffer))
            buffered, self._buffer = self._buffer, []
            for value in buffered:
                self._step(value)
            return
        self._step(y)

    def _initialise(self, y: np.ndarray) -> None:
        m = self.m
        self.level = float(np.mean(y[:m]))
        if self.has_trend:
            self.trend = float(np.mean((y[m:2 * m] - y[:m]) / m))
        self.season = [float(v) for v in y[:m] - self.level]
        self.pos = 0

    def _step(self, y: float) -> None:
        assert self.level is not None
        a, g, phi = self.alpha, self.gamma, self.phi
        b = self.beta if self.beta is not None else 0.0
        trend = phi * self.trend if self.has_trend else 0.0
        prev_level = self.level
        s_old = self.season[self.pos]
        self.level = a * (y - s_old) + (1.0 - a) * (prev_level + trend)
        if self.has_trend:
            self.trend = b * (self.level - prev_level) + (1.0 - b) * trend
        self.season[self.pos] = g * (y - prev_level - trend) + (1.0 - g) * s_old
        self.pos = (self.pos + 1) % self.m

    def _predict(self, h: int) -> float:
        assert self.level is not None
        trend = _damped_sum(self.phi, h) * self.trend if self.has_trend else 0.0
        return self.level + trend + self.season[(self.pos + h - 1) % self.m]

    def _model_state(self) -> dict[str, Any]:
        return {"level": self.level, "trend": self.trend, "season": list(self.season), "pos": self.pos,
                "buffer": list(self._buffer)}

    def _load_model_state(self, state: dict[str, Any]) -> None:
        self.level = None if state["level"] is None else float(state["level"])
        self.trend = float(state["trend"])
        self.season = [float(v) for v in state["season"]]
        self.pos = int(state["pos"])
        self._buffer = [float(v) for v in state["buffer"]]
