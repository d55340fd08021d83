"""Feedback control: ``pid`` on any scraped signal, and ``adaptive`` with online capacity estimation.

``pid`` is a textbook positional PID whose output *is* the replica count:

    u = P + I + D,  P = kp·e,  e = measurement − setpoint,
    I ← I + ki·e·dt (+ anti-windup),  D = filtered kd·d(measurement)/dt.

The error is measurement minus setpoint because every supported signal (utilization, latency,
queue length, in-flight requests) rises when replicas are short, so a positive error must add
replicas. The integral term carries the operating point: on the first call it is initialised
so that u equals the current replica count (bumpless start), and from then on it holds
whatever count the proportional term does not explain. Positional rather than incremental
(velocity) form, because anti-windup and output limits are explicit on a positional output,
and a restart resumes exactly from ``state_dict``.

* Derivative on measurement, not on error, so a setpoint change gives no derivative kick,
  through a first-order filter with time constant ``derivative_filter`` (scraped metrics are
  noisy, and an unfiltered derivative amplifies that noise by 1/dt).
* Anti-windup: ``back_calculation`` (default) bleeds the integral toward the saturated output
  at rate 1/``tracking_time``; ``clamp`` stops integrating while the output is saturated in
  the error's direction and keeps the integral inside the output limits; ``none`` for
  comparison. With ``track_replicas`` the count actually actuated (after other wrappers'
  bounds and rate limits) is fed back as well, the usual "tracking mode" of industrial PIDs.

``adaptive`` estimates the per-replica capacity κ (requests per second a fully busy replica
completes) by recursive least squares with a forgetting factor on throughput = κ × busy
replicas, and closes the gap to ``λ / (target·κ̂)`` replicas by a fraction ``gain`` per decision:
an integral controller on the load error λ − target·κ̂·n whose gain, ``gain / (target·κ̂)``
replicas per request/s, is scheduled from the estimate. Using the arrival rate through κ̂ rather
than the utilization keeps the loop gain right when utilization saturates at 100 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from tidal.config.fields import Duration
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.queueing_policy import load_sample, scale_from_zero
from tidal.policy.registry import PolicyConfig, register

Signal = Literal[
    "utilization",
    "cpu_utilization",
    "gpu_utilization",
    "memory_utilization",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "queue_length",
    "concurrency",
    "concurrency_per_replica",
]


def read_signal(obs: Observation, signal: str, window: float) -> float | None:
    """The signal's mean over ``window`` seconds (its latest sample when ``window`` is 0)."""
    m = obs.metrics

    def value(name: str) -> float | None:
        return m.last(name) if window <= 0 else m.mean(name, window)

    if signal == "concurrency_per_replica":
        total = value("concurrency")
        ready = value("ready_replicas")
        ready = obs.ready if ready is None else ready
        return None if total is None else total / max(ready, 1.0)
    return value(signal)


# --------------------------------------------------------------------------- PID


@dataclass(frozen=True, slots=True)
class PIDGains:
    """Proportional (replicas per unit error), integral (per unit error per second) and
    derivative (replicas per unit error per second of change) gains."""

    kp: float
    ki: float
    kd: float


class PIDController:
    """A discrete positional PID with output limits, anti-windup and a filtered derivative.

    Pure numbers: ``update(time, measurement)`` returns the saturated output. Time steps may be
    irregular; a call at a time not after the previous one returns the previous output.
    """

    def __init__(
        self,
        gains: PIDGains,
        setpoint: float,
        *,
        output_limits: tuple[float, float] = (0.0, math.inf),
        anti_windup: Literal["back_calculation", "clamp", "none"] = "back_calculation",
        tracking_time: float | None = None,
        derivative_filter: float = 0.0,
    ) -> None:
        lo, hi = output_limits
        if hi < lo:
            raise ValueError(f"output limits must satisfy min <= max, got {output_limits}")
        if min(gains.kp, gains.ki, gains.kd) < 0:
            raise ValueError(f"gains must be >= 0, got {gains}")
        self.gains = gains
        self.setpoint = float(setpoint)
        self.limits = (float(lo), float(hi))
        self.anti_windup = anti_windup
        # Åström & Hägglund: a tracking time near the integral time Ti = kp/ki; with no
        # proportional action, reset at once.
        if tracking_time is None:
            tracking_time = gains.kp / gains.ki if gains.kp > 0 and gains.ki > 0 else 0.0
        self.tracking_time = float(tracking_time)
        self.derivative_filter = float(derivative_filter)
        self.integral = 0.0
        self.derivative = 0.0
        self.last_measurement: float | None = None
        self.last_time: float | None = None
        self.last_output: float | None = None  # saturated
        self.last_unsaturated: float | None = None

    @property
    def started(self) -> bool:
        return self.last_time is not None

    def start(self, time: float, measurement: float, output: float) -> float:
        """Bumpless start: set the integral so the output equals ``output`` right now."""
        error = measurement - self.setpoint
        self.integral = output - self.gains.kp * error
        self.derivative = 0.0
        self.last_measurement = float(measurement)
        self.last_time = float(time)
        self.last_unsaturated = float(output)
        self.last_output = self._saturate(output)
        return self.last_output

    def track(self, applied: float, time: float) -> None:
        """Feed back the output actually applied since the last update (tracking mode)."""
        if self.last_output is None or self.last_time is None or applied == self.last_output:
            return
        self.integral += self._tracking_fraction(time - self.last_time) * (applied - self.last_output)

    def update(self, time: float, measurement: float) -> float:
        """One control step at ``time``; returns the saturated output."""
        if self.last_time is None or self.last_measurement is None:
            raise RuntimeError("PIDController.update before start()")
        dt = time - self.last_time
        if dt <= 0:
            assert self.last_output is not None
            return self.last_output
        g = self.gains
        error = measurement - self.setpoint
        p = g.kp * error
        tf = self.derivative_filter
        # Backward Euler of kd·s/(1 + tf·s) applied to the measurement (no setpoint kick).
        self.derivative = (tf * self.derivative + g.kd * (measurement - self.last_measurement)) / (tf + dt)
        d = self.derivative
        # Backward Euler: this step's error is integrated before the output is formed.
        candidate = self.integral + g.ki * error * dt
        if self.anti_windup == "clamp":
            v = p + candidate + d
            pushing_up = v > self.limits[1] and error > 0
            pushing_down = v < self.limits[0] and error < 0
            if not (pushing_up or pushing_down):  # conditional integration
                self.integral = candidate
            self.integral = min(max(self.integral, self.limits[0]), self.limits[1])
            v = p + self.integral + d
            u = self._saturate(v)
        else:
            self.integral = candidate
            v = p + self.integral + d
            u = self._saturate(v)
            if self.anti_windup == "back_calculation":
                self.integral += self._tracking_fraction(dt) * (u - v)
        self.last_measurement = float(measurement)
        self.last_time = float(time)
        self.last_unsaturated = v
        self.last_output = u
        return u

    def _tracking_fraction(self, dt: float) -> float:
        # dt/Tt, capped at 1: a correction larger than the gap would overshoot the other way.
        return 1.0 if self.tracking_time <= 0 else min(dt / self.tracking_time, 1.0)

    def _saturate(self, v: float) -> float:
        return min(max(v, self.limits[0]), self.limits[1])

    def state_dict(self) -> dict[str, Any]:
        return {
            "integral": self.integral,
            "derivative": self.derivative,
            "last_measurement": self.last_measurement,
            "last_time": self.last_time,
            "last_output": self.last_output,
            "last_unsaturated": self.last_unsaturated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def opt(key: str) -> float | None:
            value = state.get(key)
            return None if value is None else float(value)

        self.integral = float(state.get("integral", 0.0))
        self.derivative = float(state.get("derivative", 0.0))
        self.last_measurement = opt("last_measurement")
        self.last_time = opt("last_time")
        self.last_output = opt("last_output")
        self.last_unsaturated = opt("last_unsaturated")


class PIDConfig(PolicyConfig):
    signal: Signal = Field("utilization", description="scraped signal to hold at the setpoint")
    setpoint: float = Field(0.6, ge=0, description="desired value of the signal (its own unit)")
    kp: float = Field(10.0, ge=0, description="proportional gain: replicas per unit of error")
    ki: float = Field(0.2, ge=0, description="integral gain: replicas per unit of error per second")
    kd: float = Field(0.0, ge=0, description="derivative gain: replicas per unit/s of signal change")
    window: Duration = Field(0.0, ge=0, description="mean of the signal over this window (0: latest sample)")
    derivative_filter: Duration = Field(30.0, ge=0, description="time constant of the derivative's low-pass filter")
    anti_windup: Literal["back_calculation", "clamp", "none"] = "back_calculation"
    tracking_time: Duration | None = Field(None, gt=0, description="back-calculation time constant (default kp/ki)")
    track_replicas: bool = Field(False, description="feed back the replica count actually actuated")
    min_output: int = Field(0, ge=0, description="lower output limit (replicas)")
    max_output: int = Field(1000, ge=0, description="upper output limit (replicas)")

    @field_validator("max_output")
    @classmethod
    def _limits(cls, value: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_output")
        if lo is not None and value < lo:
            raise ValueError(f"must be >= min_output ({lo}), got {value}")
        return value

    @model_validator(mode="after")
    def _some_gain(self) -> PIDConfig:
        if self.kp == 0 and self.ki == 0 and self.kd == 0:
            raise ValueError("kp, ki and kd are all 0: the controller would never move")
        return self


class PIDPolicy(Policy):
    """PID on a scraped signal; the controller's output is the replica count (positional form)."""

    def __init__(self, config: PIDConfig) -> None:
        self.config = config
        self.controller = PIDController(
            PIDGains(config.kp, config.ki, config.kd),
            config.setpoint,
            output_limits=(config.min_output, config.max_output),
            anti_windup=config.anti_windup,
            tracking_time=config.tracking_time,
            derivative_filter=config.derivative_filter,
        )

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        y = read_signal(obs, cfg.signal, cfg.window)
        ctl = self.controller
        if y is None:
            return Decision(obs.replicas, reason=f"no {cfg.signal} sample: hold")
        if not ctl.started:
            u = ctl.start(obs.time, y, obs.replicas)
            return Decision(_round(u), reason=f"{cfg.signal}={y:.4g} setpoint={cfg.setpoint:g}: start at {_round(u)}")
        if cfg.track_replicas:
            ctl.track(obs.replicas, obs.time)
        u = ctl.update(obs.time, y)
        n = _round(u)
        sat = " (saturated)" if ctl.last_unsaturated is not None and ctl.last_unsaturated != u else ""
        return Decision(n, reason=f"{cfg.signal}={y:.4g} setpoint={cfg.setpoint:g} → {u:.3g}{sat}")

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state.get("controller", {}))

    def describe(self) -> str:
        c = self.config
        return f"pid({c.signal}={c.setpoint:g}, kp={c.kp:g}, ki={c.ki:g}, kd={c.kd:g})"


def _round(u: float) -> int:
    """Nearest replica count, halves up (deterministic, unlike banker's rounding)."""
    return max(int(math.floor(u + 0.5)), 0)


# --------------------------------------------------------------------------- adaptive


class RecursiveLeastSquares:
    """Recursive least squares for y = φᵀθ with exponential forgetting.

    ``forgetting`` λ in (0, 1] discounts a sample k steps old by λᵏ (memory ~ 1/(1 - λ)
    samples). The covariance is capped at its initial value: with forgetting and no excitation
    it would otherwise grow without bound ("covariance windup") and the next sample would
    swing the estimate wildly.
    """

    def __init__(self, n: int, forgetting: float, initial_covariance: float,
                 initial: np.ndarray | None = None) -> None:
        if not 0 < forgetting <= 1:
            raise ValueError(f"forgetting must lie in (0, 1], got {forgetting}")
        self.forgetting = float(forgetting)
        self.p_max = float(initial_covariance)
        self.theta = np.zeros(n) if initial is None else np.asarray(initial, dtype=float).copy()
        self.P = np.eye(n) * self.p_max
        self.updates = 0

    def update(self, phi: np.ndarray, y: float) -> np.ndarray:
        phi = np.asarray(phi, dtype=float)
        p_phi = self.P @ phi
        gain = p_phi / (self.forgetting + phi @ p_phi)
        self.theta = self.theta + gain * (y - phi @ self.theta)
        self.P = (self.P - np.outer(gain, p_phi)) / self.forgetting
        self.P = 0.5 * (self.P + self.P.T)  # keep it symmetric against rounding drift
        scale = np.max(np.diag(self.P))
        if scale > self.p_max:
            self.P *= self.p_max / scale
        self.updates += 1
        return self.theta

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "P": self.P.tolist(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "theta" in state:
            self.theta = np.asarray(state["theta"], dtype=float)
        if "P" in state:
            self.P = np.asarray(state["P"], dtype=float)
        self.updates = int(state.get("updates", 0))


class AdaptiveConfig(PolicyConfig):
    target: float = Field(0.7, gt=0, le=1, description="utilization to hold (busy fraction of slots)")
    gain: float = Field(0.5, gt=0, le=1, description="fraction of the gap to the model's count closed per decision")
    forgetting: float = Field(0.95, gt=0, le=1, description="RLS forgetting factor (memory ~ 1/(1-λ) decisions)")
    capacity: float | None = Field(None, gt=0, description="initial per-replica capacity, requests/s at 100% busy")
    initial_covariance: float = Field(1e4, gt=0, description="RLS initial covariance (trust in the initial capacity⁻¹)")
    window: Duration = Field(15.0, gt=0, description="averaging window over scraped metrics")
    min_sample_utilization: float = Field(0.05, ge=0, lt=1, description="ignore samples below this utilization")


class AdaptivePolicy(Policy):
    """Gain-scheduled integral control on the load, with per-replica capacity learnt by RLS."""

    def __init__(self, config: AdaptiveConfig) -> None:
        self.config = config
        initial = None if config.capacity is None else np.array([config.capacity])
        self.rls = RecursiveLeastSquares(1, config.forgetting, config.initial_covariance, initial)
        self.known = config.capacity is not None

    @property
    def capacity(self) -> float | None:
        """Current estimate of κ, requests per second per fully busy replica."""
        return float(self.rls.theta[0]) if self.known and self.rls.theta[0] > 0 else None

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        sample = load_sample(obs, cfg.window, cfg.min_sample_utilization)
        if sample is None:
            return Decision(obs.replicas, reason="no metrics yet: hold")
        if sample.scrapes > 0 and sample.busy_replicas > 0:
            # Per-scrape means, so the regressor's scale does not depend on the window.
            phi = sample.busy_replicas / sample.scrapes
            y = sample.throughput / sample.scrapes
            if not self.known:
                self.rls.theta = np.array([y / phi])  # first sample: start from its ratio
                self.known = True
            else:
                self.rls.update(np.array([phi]), y)
        kappa = self.capacity
        lam = sample.arrival_rate
        if kappa is None:
            if scale_from_zero(obs, sample):
                return Decision(max(obs.replicas, 1), reason="no capacity estimate: scale from zero")
            return Decision(obs.replicas, reason="no capacity estimate yet: hold")
        goal = math.ceil(lam / (cfg.target * kappa) - 1e-9)
        current = obs.replicas
        if obs.ready == 0 and goal > 0 and current == 0:
            return Decision(goal, reason=f"κ̂={kappa:.4g}/s per replica, λ={lam:.4g}/s: scale from zero to {goal}")
        # Integral action on the load error e = λ - target·κ̂·n with the scheduled gain
        # K = gain/(target·κ̂): Δn = K·e = gain·(λ/(target·κ̂) - n). Steps round away from zero
        # so a small gap still closes, and never past the goal.
        step = cfg.gain * (goal - current)
        n = current + (math.ceil(step) if step > 0 else math.floor(step))
        k = cfg.gain / (cfg.target * kappa)
        return Decision(max(n, 0), reason=f"κ̂={kappa:.4g}/s per replica, λ={lam:.4g}/s → goal {goal}, "
                                          f"gain {k:.3g} replicas per req/s")

    def state_dict(self) -> dict[str, Any]:
        return {"rls": self.rls.state_dict(), "known": self.known}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rls.load_state_dict(state.get("rls", {}))
        self.known = bool(state.get("known", self.known))

    def describe(self) -> str:
        return f"adaptive(target={self.config.target:g})"


register("pid", PIDConfig, "PID controller on a scraped signal; output is the replica count")(PIDPolicy)
register("adaptive", AdaptiveConfig, "capacity learnt by recursive least squares, gain scheduled from it")(
    AdaptivePolicy
)
