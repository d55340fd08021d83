"""Offline fitting through statsmodels: estimate ETS / ARIMA parameters on a history.

The online forecasters take fixed smoothing parameters; these helpers estimate them (maximum
likelihood / least squares, as statsmodels does) on a recorded history, so a policy can be seeded
with parameters that suit the traffic::

    buckets = resample(times, rps, step_s=300)
    fit = fit_ets(buckets, trend=False, season_length=288)
    forecaster = fit.forecaster(step_s=300, history=buckets)  # state at the end of the history
    block = fit.to_config(300, history=buckets, end_time=times[-1])  # a policy's forecaster block

statsmodels is imported lazily: the online forecasters and policies do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tidal.forecast.base import Forecaster
from tidal.forecast.smoothing import EWMA, Holt, HoltWinters

_TIME_EPS = 1e-9


def resample(times: Sequence[float], values: Sequence[float], step_s: float) -> np.ndarray:
    """Average irregular samples into the buckets :meth:`Forecaster.update` uses.

    Bucket ``k`` covers ``((k−1)·step, k·step]``; empty buckets inside the span repeat the
    previous bucket's value. Returns one value per bucket from the first to the last sample's.
    """
    t = np.asarray(times, dtype=float)
    y = np.asarray(values, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError("times and values must be 1-D arrays of the same length")
    if len(t) == 0:
        return np.empty(0)
    if np.any(np.diff(t) <= 0):
        raise ValueError("times must be strictly increasing")
    index = np.ceil(t / step_s - _TIME_EPS).astype(np.int64)
    index -= index[0]
    sums = np.bincount(index, weights=y)
    counts = np.bincount(index)
    out = np.empty(len(sums))
    previous = math.nan
    for i, (s, c) in enumerate(zip(sums, counts, strict=True)):
        previous = s / c if c else previous
        out[i] = previous
    return out


@dataclass(frozen=True)
class ETSFit:
    """Estimated additive exponential-smoothing parameters and initial states.

    ``beta``/``initial_trend`` are ``None`` without trend, ``gamma``/``initial_seasonal``/
    ``season_length`` without season; ``phi`` is 1 unless damped.
    """

    alpha: float
    beta: float | None
    gamma: float | None
    phi: float
    initial_level: float
    initial_trend: float | None
    initial_seasonal: tuple[float, ...] | None
    season_length: int | None
    sse: float
    aic: float

    def forecaster(self, step_s: float = 1.0, history: Sequence[float] | None = None) -> Forecaster:
        """An online forecaster with these parameters; replaying ``history`` (the series the fit
        used) brings it to the state at the history's end."""
        f: Forecaster
        if self.season_length is not None:
            f = HoltWinters(self.alpha, self.gamma or 0.0, self.season_length, beta=self.beta, step_s=step_s,
                            phi=self.phi, initial_level=self.initial_level, initial_trend=self.initial_trend,
                            initial_seasonal=self.initial_seasonal)
        elif self.beta is not None:
            f = Holt(self.alpha, self.beta, step_s=step_s, phi=self.phi, initial_level=self.initial_level,
                     initial_trend=self.initial_trend)
        else:
            f = EWMA(self.alpha, step_s=step_s, initial_level=self.initial_level)
        for value in history if history is not None else ():
            f.observe(float(value))
        return f

    def to_config(self, step_s: float, history: Sequence[float] | None = None,
                  end_time: float | None = None) -> dict[str, Any]:
        """The ``forecaster:`` block of a ``predictive`` policy with these parameters.

        Without ``history`` the block holds the fitted initial states: the season's phase is then
        that of a series whose first bucket ends at ``step_s`` on the policy's clock. With
        ``history`` (the series the fit used) and ``end_time`` (when its last bucket ended, on
        the clock the policy will see), it holds the states at the end of the history, the season
        rotated to the clock's phase, so the policy carries on where the history stopped.
        """
        level, trend = self.initial_level, self.initial_trend
        seasonal = list(self.initial_seasonal) if self.initial_seasonal is not None else None
        if history is not None:
            f = self.forecaster(step_s, history)
            assert isinstance(f, (EWMA, Holt, HoltWinters)) and f.level is not None
            level = f.level
            if isinstance(f, (Holt, HoltWinters)) and self.beta is not None:
                trend = float(f.trend)
            if isinstance(f, HoltWinters):
                if end_time is None:
                    raise ValueError("end_time is needed to put the season on the clock")
                m = f.m
                # Bucket ending at k·step has phase (k − 1) mod m; the next one is k_last + 1.
                next_phase = math.ceil(end_time / step_s - _TIME_EPS) % m
                seasonal = [0.0] * m
                for i in range(m):
                    seasonal[(next_phase + i) % m] = f.season[(f.pos + i) % m]
        block: dict[str, Any]
        if self.season_length is not None:
            block = {"kind": "holt_winters", "season": self.season_length * step_s, "alpha": self.alpha,
                     "gamma": self.gamma, "beta": self.beta, "damping": self.phi, "initial_level": level,
                     "initial_seasonal": seasonal}
            if self.beta is not None:
                block["initial_trend"] = trend
        elif self.beta is not None:
            block = {"kind": "holt", "alpha": self.alpha, "beta": self.beta, "damping": self.phi,
                     "initial_level": level, "initial_trend": trend}
        else:
            block = {"kind": "ewma", "alpha": self.alpha, "initial_level": level}
        block["step"] = step_s
        return block


def fit_ets(values: Sequence[float], *, trend: bool = True, season_length: int | None = None,
            damped: bool = False) -> ETSFit:
    """Fit additive exponential smoothing to a regular series with statsmodels.

    Parameters and initial states are estimated jointly (``initialization_method="estimated"``).
    A seasonal fit needs at least two full seasons.
    """
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = np.asarray(values, dtype=float)
    if season_length is not None and len(y) < 2 * season_length:
        raise ValueError(f"a seasonal fit needs two seasons ({2 * season_length} values), got {len(y)}")
    if damped and not trend:
        raise ValueError("damped requires trend")
    model = ExponentialSmoothing(y, trend="add" if trend else None, damped_trend=damped,
                                 seasonal="add" if season_length else None, seasonal_periods=season_length,
                                 initialization_method="estimated")
    res = model.fit()
    p = res.params
    seasonal = None if not season_length else tuple(float(v) for v in np.asarray(p["initial_seasons"]))
    return ETSFit(
        alpha=float(p["smoothing_level"]),
        beta=float(p["smoothing_trend"]) if trend else None,
        gamma=float(p["smoothing_seasonal"]) if season_length else None,
        phi=float(p["damping_trend"]) if damped else 1.0,
        initial_level=float(p["initial_level"]),
        initial_trend=float(p["initial_trend"]) if trend else None,
        initial_seasonal=seasonal,
        season_length=season_length,
        sse=float(res.sse),
        aic=float(res.aic),
    )


@dataclass(frozen=True)
class ARIMAFit:
    """An ARIMA fit: its estimated parameters by name, AIC, and forecasts past the history."""

    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int, int]
    params: dict[str, float]
    aic: float
    forecasts: tuple[float, ...]


def fit_arima(values: Sequence[float], order: tuple[int, int, int] = (1, 1, 1),
              seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0), steps: int = 1,
              trend: str | None = None) -> ARIMAFit:
    """Fit ``statsmodels.tsa.arima.model.ARIMA`` and forecast ``steps`` values past the history."""
    from statsmodels.tsa.arima.model import ARIMA

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    y = np.asarray(values, dtype=float)
    res = ARIMA(y, order=order, seasonal_order=seasonal_order, trend=trend).fit()
    names = res.model.param_names
    params = {str(n): float(v) for n, v in zip(names, np.asarray(res.params), strict=True)}
    return ARIMAFit(order=tuple(order), seasonal_order=tuple(seasonal_order), params=params, aic=float(res.aic),
                    forecasts=tuple(float(v) for v in np.asarray(res.forecast(steps))))
