"""The ``predictive`` policy: size the fleet for the load forecast one start-up time ahead.

A replica asked for now serves only after the actuation delay and its cold start, so a reactive
policy is always that late. This one forecasts the arrival rate (metric ``rps`` by default) at
``horizon`` = cold start + actuation delay + one sync period, adds a safety margin equal to the
``quantile`` of its own recent forecast errors *at that lead time*, and sizes::

    replicas = ceil(rate × service_time / (concurrency × target_utilization))
             = ceil(rate / (capacity × target_utilization))

where ``capacity = concurrency / service_time`` is what one fully busy replica serves per second,
given in the config or estimated online as ``Σ rps / Σ (utilization × ready_replicas)``.

It sizes for the *peak* forecast between now and the horizon: a replica removed now would take a
whole horizon to come back. Wrap it with ``stabilization`` (or use ``hybrid``) to slow scale-down.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tidal.config.fields import Duration
from tidal.core.errors import TidalInputError
from tidal.core.types import METRIC_NAMES, Decision, MetricsWindow, Observation
from tidal.core.units import parse_duration
from tidal.forecast import EWMA, Forecaster, ForecastErrors, Holt, HoltWinters, LinearRegression, SeasonalNaive
from tidal.policy.base import Policy
from tidal.policy.registry import PolicyConfig, register

#: Metric names that are not arrival rates, so cannot be forecast and divided by a capacity.
_NOT_RATES = frozenset(METRIC_NAMES) - {"rps"}
#: Utilisation at or above this is saturation: arrivals exceed throughput, so such samples would
#: overstate a replica's capacity.
SATURATED = 0.95
#: Capacity is estimated only once the window held at least this much busy replica time per sample.
MIN_BUSY_REPLICAS = 0.05
#: Relative forecast errors divide by at least this many requests/s, so near-idle periods do
#: not produce enormous relative errors.
REL_ERROR_FLOOR = 1.0
#: Startup durations remembered (by pod id) to estimate the cold start.
STARTUP_MEMORY = 64
#: A runtime horizon check needs this many decision intervals (one long gap is a hiccup).
INTERVALS_FOR_CHECK = 3


# --------------------------------------------------------------------------- forecaster blocks


class _ForecasterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    step: Duration = Field(60.0, gt=0, description="bucket width: metric samples are averaged per step")

    def build(self) -> Forecaster:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


def _steps(value: float, info: ValidationInfo, minimum: int) -> float:
    """Check that a duration field is a whole number (>= minimum) of forecaster steps."""
    step = info.data.get("step")
    if step is None:  # step itself was invalid; its error is reported
        return value
    ratio = value / step
    if ratio < minimum - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(f"must be a whole multiple (at least {minimum}) of step ({step:g}s), got {value:g}s")
    return value


class EWMASpec(_ForecasterSpec):
    """Simple exponential smoothing (flat forecast)."""

    kind: Literal["ewma"]
    alpha: float = Field(0.3, gt=0, le=1, description="smoothing of the level")
    initial_level: float | None = None

    def build(self) -> Forecaster:
        return EWMA(self.alpha, step_s=self.step, initial_level=self.initial_level)


class HoltSpec(_ForecasterSpec):
    """Holt's linear trend (double exponential smoothing), optionally damped."""

    kind: Literal["holt"]
    alpha: float = Field(0.5, gt=0, le=1, description="smoothing of the level")
    beta: float = Field(0.3, ge=0, le=1, description="smoothing of the trend")
    damping: float = Field(1.0, gt=0, le=1, description="trend damping phi (1 = none)")
    initial_level: float | None = None
    initial_trend: float | None = None

    @model_validator(mode="after")
    def _initial_pair(self) -> HoltSpec:
        if (self.initial_level is None) != (self.initial_trend is None):
            raise ValueError("initial_level and initial_trend go together: give both or neither")
        return self

    def build(self) -> Forecaster:
        return Holt(self.alpha, self.beta, step_s=self.step, phi=self.damping,
                    initial_level=self.initial_level, initial_trend=self.initial_trend)


class HoltWintersSpec(_ForecasterSpec):
    """Additive Holt–Winters with a season of ``season`` (a multiple of ``step``)."""

    kind: Literal["holt_winters"]
    season: Duration = Field(gt=0, description="season length, e.g. 24h")
    alpha: float = Field(0.3, gt=0, le=1, description="smoothing of the level")
    beta: float | None = Field(None, ge=0, le=1, description="smoothing of the trend; omit for no trend")
    gamma: float = Field(0.1, ge=0, le=1, description="smoothing of the season")
    damping: float = Field(1.0, gt=0, le=1, description="trend damping phi (1 = none)")
    initial_level: float | None = None
    initial_trend: float | None = None
    initial_seasonal: list[float] | None = None

    @field_validator("season")
    @classmethod
    def _season_in_steps(cls, value: float, info: ValidationInfo) -> float:
        return _steps(value, info, 2)

    @model_validator(mode="after")
    def _initial_states(self) -> HoltWintersSpec:
        m = round(self.season / self.step)
        if self.initial_seasonal is not None and len(self.initial_seasonal) != m:
            raise ValueError(f"initial_seasonal needs one value per step of the season ({m}), "
                             f"got {len(self.initial_seasonal)}")
        if self.beta is None and self.initial_trend is not None:
            raise ValueError("initial_trend given without a trend (set beta)")
        given = [self.initial_level is not None, self.initial_seasonal is not None]
        if self.beta is not None:
            given.append(self.initial_trend is not None)
        if any(given) and not all(given):
            raise ValueError("give all initial states (initial_level, initial_seasonal, and initial_trend "
                             "with a trend) or none")
        return self

    def build(self) -> Forecaster:
        return HoltWinters(self.alpha, self.gamma, round(self.season / self.step), beta=self.beta,
                           step_s=self.step, phi=self.damping, initial_level=self.initial_level,
                           initial_trend=self.initial_trend, initial_seasonal=self.initial_seasonal)


class SeasonalNaiveSpec(_ForecasterSpec):
    """The value one season earlier."""

    kind: Literal["seasonal_naive"]
    season: Duration = Field(gt=0, description="season length, e.g. 24h")

    @field_validator("season")
    @classmethod
    def _season_in_steps(cls, value: float, info: ValidationInfo) -> float:
        return _steps(value, info, 1)

    def build(self) -> Forecaster:
        return SeasonalNaive(round(self.season / self.step), step_s=self.step)


class LinearSpec(_ForecasterSpec):
    """A least-squares line through the last ``window`` of buckets, extended."""

    kind: Literal["linear"]
    window: Duration = Field(600.0, gt=0, description="regression window (at least two steps)")

    @field_validator("window")
    @classmethod
    def _window_in_steps(cls, value: float, info: ValidationInfo) -> float:
        return _steps(value, info, 2)

    def build(self) -> Forecaster:
        return LinearRegression(round(self.window / self.step), step_s=self.step)


ForecasterSpec = Annotated[
    EWMASpec | HoltSpec | HoltWintersSpec | SeasonalNaiveSpec | LinearSpec,
    Field(discriminator="kind"),
]


def _parse_horizon(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"expected 'auto' or a duration such as 90s or 5m, got {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return seconds


#: ``auto`` or a positive duration.
Horizon = Annotated[float | Literal["auto"], PlainValidator(_parse_horizon),
                    WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": ["number", "string"]}]})]


# --------------------------------------------------------------------------- policy config


class PredictiveConfig(PolicyConfig):
    """Parameters of the ``predictive`` policy (see ``docs/policies/predictive.md``)."""

    metric: str = Field("rps", min_length=1, description="arrival-rate metric to forecast")
    forecaster: ForecasterSpec = Field(default_factory=lambda: HoltSpec(kind="holt"))
    sync_period_hint: Duration | None = Field(None, gt=0, description="the controller's sync period, if known")
    cold_start: Duration | None = Field(None, ge=0, description="replica start-up time; learned from pods if omitted")
    actuation_delay: Duration = Field(0.0, ge=0, description="decision-to-actuation delay")
    horizon: Horizon = Field("auto", description="lead time: auto = cold start + actuation delay + sync period")
    quantile: float = Field(0.9, gt=0, lt=1, description="quantile of recent forecast errors used as margin")
    error: Literal["absolute", "relative"] = "absolute"
    # A day, not an hour: errors come one per forecaster step, so with a 5-minute step an hour holds
    # 12 errors, too few for a 0.9 quantile (the margin then jumps with every new error). A day
    # also spans a daily cycle. On the quality benchmark's NASA trace this alone took the tuned
    # policy from 4 % to 10 % fewer replica-hours than the tuned HPA (docs/quality.md).
    error_window: Duration = Field(86400.0, gt=0, description="how long forecast errors are remembered")
    min_error_samples: int = Field(10, ge=1, description="errors needed before the quantile replaces initial_margin")
    initial_margin: float = Field(0.1, ge=0, description="margin (fraction of the forecast) until then")
    max_margin: float = Field(1.0, ge=0, description="cap on the margin, as a fraction of the forecast")
    target_utilization: float = Field(0.7, gt=0, le=1, description="planned busy fraction of replica slots")
    concurrency: int | None = Field(None, ge=1, description="slots per replica")
    service_time: Duration | None = Field(None, gt=0, description="mean service time; with concurrency fixes capacity")
    capacity_window: Duration = Field(300.0, gt=0, description="window of the online capacity estimate")

    @field_validator("metric")
    @classmethod
    def _rate_metric(cls, value: str) -> str:
        if value in _NOT_RATES:
            raise ValueError(f"{value!r} is not an arrival rate; forecast 'rps' or a custom rate metric")
        return value

    @field_validator("horizon")
    @classmethod
    def _horizon_covers_sync(cls, value: float | str, info: ValidationInfo) -> float | str:
        sync = info.data.get("sync_period_hint")
        if value != "auto" and sync is not None and value < sync:
            raise ValueError(f"{value:g}s is shorter than the sync period ({sync:g}s): a decision would be "
                             "replaced before it could take effect")
        return value

    @field_validator("service_time")
    @classmethod
    def _service_time_needs_slots(cls, value: float | None, info: ValidationInfo) -> float | None:
        # "concurrency" is missing from info.data only when it failed; that error is reported.
        if value is not None and "concurrency" in info.data and info.data["concurrency"] is None:
            raise ValueError("needs concurrency (slots per replica) to give a capacity; set both, "
                             "or neither to estimate capacity online")
        return value


# --------------------------------------------------------------------------- policy


class PredictivePolicy(Policy):
    """Forecast the arrival rate one start-up ahead; size for it plus an error-quantile margin.

    Built from a :class:`PredictiveConfig`. State (forecaster, pending forecasts and errors,
    capacity estimate, learned start-up times, sync period) round-trips through ``state_dict``.
    """

    def __init__(self, config: PredictiveConfig) -> None:
        self.config = config
        self.forecaster = config.forecaster.build()
        self.errors = ForecastErrors(self.forecaster.step_s, config.error_window,
                                     relative=config.error == "relative", rel_floor=REL_ERROR_FLOOR)
        self._fed_until: float | None = None
        self._capacity: float | None = None
        self._startups: dict[int, float] = {}
        self._in_progress = 0.0
        self._current_rate: float | None = None
        self._last_time: float | None = None
        self._sync_s: float | None = None
        self._intervals = 0

    # ------------------------------------------------------------------ decide
    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        self._track_sync(obs.time)
        self._learn_startups(obs)
        self._ingest(obs)
        capacity = self.capacity(obs)
        if self.forecaster.n_observed == 0:
            return Decision(obs.replicas, reason=f"no complete {cfg.metric} bucket yet: hold")
        horizon = self.horizon_s()
        rate, margin = self._forecast(obs.time, horizon)
        planned = rate + margin
        if capacity is None:
            if obs.ready == 0 and planned > 0:
                return Decision(max(obs.replicas, 1), reason="no capacity estimate yet: scale from zero")
            return Decision(obs.replicas, reason="no capacity estimate yet: hold")
        desired = max(0, math.ceil(planned / (capacity * cfg.target_utilization) - 1e-9))
        return Decision(desired, reason=(f"{cfg.metric} forecast {rate:.4g} + margin {margin:.3g} in {horizon:g}s, "
                                         f"capacity {capacity:.4g}/replica"))

    # ------------------------------------------------------------------ pieces
    def horizon_s(self) -> float:
        """The lead time in seconds: the configured one, or cold start + actuation delay + sync."""
        cfg = self.config
        if cfg.horizon != "auto":
            return float(cfg.horizon)
        cold = cfg.cold_start if cfg.cold_start is not None else self.learned_cold_start()
        sync = cfg.sync_period_hint if cfg.sync_period_hint is not None else (self._sync_s or 0.0)
        return cold + cfg.actuation_delay + sync

    def learned_cold_start(self) -> float:
        """Longest start-up (ready_at − started_at) seen among recent pods, or 0."""
        return max(max(self._startups.values(), default=0.0), self._in_progress)

    def capacity(self, obs: Observation) -> float | None:
        """Requests per second one fully busy replica serves (fixed or estimated online)."""
        cfg = self.config
        if cfg.concurrency is not None and cfg.service_time is not None:
            return cfg.concurrency / cfg.service_time
        estimate = _capacity_estimate(obs, cfg.metric, cfg.capacity_window)
        if estimate is not None:
            self._capacity = estimate
        return self._capacity

    def _forecast(self, now: float, horizon: float) -> tuple[float, float]:
        """(peak forecast between now and now + horizon, safety margin), both >= 0."""
        cfg = self.config
        f = self.forecaster
        steps = f.steps_to(now + horizon)
        path = f.path(steps)
        # Never plan below the present load: a replica removed now is needed now.
        current = self._current_rate
        rate = max(0.0, float(np.max(path)), current if current is not None else 0.0)
        assert f.time is not None
        # Score the forecast made for the horizon bucket once that bucket completes.
        self.errors.expect(f.time + steps * f.step_s, float(path[-1]))
        if len(self.errors) >= cfg.min_error_samples:
            q = max(0.0, self.errors.quantile(cfg.quantile) or 0.0)
            margin = q * rate if self.errors.relative else q
        else:
            margin = cfg.initial_margin * rate
        return rate, min(margin, cfg.max_margin * rate)

    def _ingest(self, obs: Observation) -> None:
        """Feed the metric samples that became visible since the last decision, and note the
        present rate (mean over the last sync period, at most one step)."""
        window = obs.metrics
        self._current_rate = self._present_rate(window)
        if self._fed_until is None:
            times, values = window.series(self.config.metric)
        else:
            span = window.visible_until - self._fed_until
            if span <= 0:
                return
            times, values = window.series(self.config.metric, span * (1 + 1e-9) + 1e-9)
            keep = times > self._fed_until
            times, values = times[keep], values[keep]
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            if math.isfinite(v):
                for end, actual in self.forecaster.update(t, v):
                    self.errors.resolve(end, actual)
        if len(times):
            self._fed_until = float(times[-1])

    def _present_rate(self, window: MetricsWindow) -> float | None:
        """Mean of the samples within one sync period (at most one step) of the latest one.

        Averaging the present load over a whole forecaster step (5 min for a daily season) would
        notice a surge minutes late and hold a one-minute spike's capacity for a step after it
        passed. Counting back from the latest sample rather than from now keeps at least one
        sample when scrapes are sparser than decisions.
        """
        step = self.forecaster.step_s
        times, values = window.series(self.config.metric, step)
        ok = np.isfinite(values)
        times, values = times[ok], values[ok]
        if not len(values):
            return None
        span = min(step, self._sync_s or step)
        return float(values[times > times[-1] - span + 1e-9].mean())

    def _learn_startups(self, obs: Observation) -> None:
        in_progress = 0.0
        for pod in obs.pods:
            if pod.ready_at is not None:
                duration = pod.ready_at - pod.started_at
                if duration > 0 and pod.id not in self._startups:
                    self._startups[pod.id] = float(duration)
                    if len(self._startups) > STARTUP_MEMORY:
                        del self._startups[next(iter(self._startups))]
            elif not pod.draining:
                in_progress = max(in_progress, obs.time - pod.started_at)
        # A pod still starting proves the start-up takes at least that long (derived from the
        # observation, so not part of the state).
        self._in_progress = in_progress

    def _track_sync(self, now: float) -> None:
        if self._last_time is not None and now > self._last_time:
            interval = now - self._last_time
            self._sync_s = interval if self._sync_s is None else min(self._sync_s, interval)
            self._intervals += 1
            horizon = self.config.horizon
            if horizon != "auto" and self._intervals >= INTERVALS_FOR_CHECK and self._sync_s > horizon + 1e-9:
                raise TidalInputError("policy.horizon", f"{horizon:g}s is shorter than the sync period "
                                      f"({self._sync_s:g}s): a decision would be replaced before it took effect")
        self._last_time = now

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "forecaster": self.forecaster.state_dict(),
            "errors": self.errors.state_dict(),
            "fed_until": self._fed_until,
            "capacity": self._capacity,
            "startups": [[k, v] for k, v in self._startups.items()],
            "last_time": self._last_time,
            "sync_s": self._sync_s,
            "intervals": self._intervals,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.forecaster.load_state_dict(state["forecaster"])
        self.errors.load_state_dict(state["errors"])
        self._fed_until = _opt(state.get("fed_until"))
        self._capacity = _opt(state.get("capacity"))
        self._startups = {int(k): float(v) for k, v in state.get("startups", [])}
        self._last_time = _opt(state.get("last_time"))
        self._sync_s = _opt(state.get("sync_s"))
        self._intervals = int(state.get("intervals", 0))

    def describe(self) -> str:
        cfg = self.config
        return f"predictive({cfg.forecaster.kind}, q={cfg.quantile:g}, target={cfg.target_utilization:g})"


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _aligned(window, names: tuple[str, ...], window_s: float) -> tuple[np.ndarray, ...] | None:
    """Values of several metrics at the sample times they share."""
    series = [window.series(name, window_s) for name in names]
    if any(len(t) == 0 for t, _ in series):
        return None
    common: np.ndarray = series[0][0]
    for t, _ in series[1:]:
        common = np.intersect1d(common, t)
    if len(common) == 0:
        return None
    return tuple(v[np.searchsorted(t, common)] for t, v in series)


def _capacity_estimate(obs: Observation, metric: str, window_s: float) -> float | None:
    """``Σ rate / Σ (utilization × ready)`` over unsaturated samples: requests/s per busy replica."""
    aligned = _aligned(obs.metrics, (metric, "utilization", "ready_replicas"), window_s)
    if aligned is None:
        aligned2 = _aligned(obs.metrics, (metric, "utilization"), window_s)
        if aligned2 is None:
            return None
        aligned = (*aligned2, np.full(len(aligned2[0]), float(obs.ready)))
    rate, util, ready = aligned
    ok = np.isfinite(rate) & np.isfinite(util) & (util < SATURATED) & (ready > 0)
    if not ok.any():
        return None
    busy = float(np.sum(util[ok] * ready[ok]))
    if busy < MIN_BUSY_REPLICAS * int(ok.sum()):
        return None
    return float(np.sum(rate[ok])) / busy


register("predictive", PredictiveConfig)(PredictivePolicy)
