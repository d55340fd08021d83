"""``mpc``: receding-horizon planning of the replica count over a short rate forecast.

Every decision forecasts the arrival rate for the next ``horizon`` (``linear_trend`` over the
last ``forecast_window`` by default; forecasters are looked up by name in :data:`FORECASTERS`),
plans the replica count of each ``step`` of the horizon, applies the first step and discards
the rest (receding horizon).

The rate of the first ``drain_time`` seconds also carries any queued backlog (``queue_length /
drain_time``), which otherwise would never be planned for.

**Model.** Time is cut into steps of ``step`` seconds; ``d = ceil(cold_start / step)``. The plan
is the requested count u_k of each step k = 0..H-1. Replicas requested at step k serve from step
k + d on (cold start), and are billed from step k. The replicas already ready or starting serve
steps 0..d-1, except that asking for fewer now removes replicas at once (scale-in is
immediate), so step j < d has ``min(base_j, u_0)`` replicas. The objective is

    Σ_k [ replica_cost · u_k + penalty(λ_{k+d}, u_k) ] · step/3600
        + Σ_{j<d} penalty(λ_j, min(base_j, u_0)) · step/3600 + change_cost · Σ_k |u_k − u_{k-1}|

subject to ``-max_step_down <= u_k − u_{k-1} <= max_step_up`` and
``min_replicas <= u_k <= max_replicas``. The penalty (money per hour) is one of

* ``utilization``: ``shortfall_cost`` per replica short of λ / (target_utilization · κ), with
  κ = concurrency / E[S] the capacity of one replica;
* ``queueing``: ``miss_cost`` per request expected to miss the latency SLO beyond the fraction
  it allows, λ · max(0, P(T > latency) − (1 − percentile)) · 3600, with P from the G/G/c model
  of :mod:`tidal.queueing.latency` (1 when the replicas cannot carry the load at all).

Treating later scale-ins as delayed too (step k's count only matters from k + d) is
conservative and only affects the discarded tail of the plan.

**Solver.** The plan is a shortest path through a layered graph (layer k = step k, node = replica
count), solved exactly by dynamic programming in O(H · N²) for N candidate counts, vectorised
with numpy. The same problem is also written as a MILP (one-hot binaries per step and count,
linear ramp constraints) for SciPy's HiGHS (``solver: milp``). DP is the default: it is exact,
has no dependency beyond numpy, always returns the same tie-break (lowest count), and on
typical instances (H = 20, N = 40) takes ~1 ms against ~20-60 ms for HiGHS (see
``docs/policies/model_based.md``). Candidates above the count that meets the SLO at the peak
forecast (or the current count, if higher) are never optimal — clipping a plan to that count
keeps it feasible and lowers its cost — so N stays small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, ValidationInfo, field_validator

from tidal.config.fields import Duration
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.queueing_policy import (
    LoadEstimator,
    ServiceModelConfig,
    SLOConfig,
    check_slo_against_service,
    load_sample,
)
from tidal.policy.registry import register
from tidal.queueing.latency import response_tail_grid
from tidal.queueing.planning import InfeasibleSLO, check_feasible, min_replicas_for_slo
from tidal.queueing.service import ServiceTime

# --------------------------------------------------------------------------- forecasters

#: ``forecaster(times, values, at, level_window) -> rates``: fit the observed rate samples and
#: predict the rate at the times ``at`` (seconds); ``level_window`` is how far back the current
#: level may be read. Pure functions; register more with :func:`register_forecaster`.
Forecaster = Callable[[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], float], NDArray[np.float64]]
FORECASTERS: dict[str, Forecaster] = {}


def register_forecaster(name: str) -> Callable[[Forecaster], Forecaster]:
    """Decorator: make a forecaster selectable by name in the ``mpc`` policy's config."""

    def decorate(fn: Forecaster) -> Forecaster:
        if name in FORECASTERS:
            raise ValueError(f"forecaster {name!r} registered twice")
        FORECASTERS[name] = fn
        return fn

    return decorate


@register_forecaster("linear_trend")
def linear_trend(times: NDArray[np.float64], values: NDArray[np.float64], at: NDArray[np.float64],
                 level_window: float) -> NDArray[np.float64]:
    """The least-squares slope of the whole window, through the level of its last ``level_window``.

    A plain regression line answers a step in the rate with the average of before and after;
    anchoring the line at the recent level (Holt's level + trend split) keeps the slope's
    smoothing without that lag. Never below 0.
    """
    if not len(values):
        return np.zeros(len(at))
    recent = times > times[-1] - level_window
    level_t, level = float(times[recent].mean()), float(values[recent].mean())
    slope = 0.0
    if len(values) >= 2 and np.ptp(times) > 0:
        dt = times - times.mean()
        slope = float((dt * (values - values.mean())).sum() / (dt * dt).sum())
    return np.maximum(level + slope * (at - level_t), 0.0)


@register_forecaster("last_value")
def last_value(times: NDArray[np.float64], values: NDArray[np.float64], at: NDArray[np.float64],
               level_window: float) -> NDArray[np.float64]:
    """The mean of the last ``level_window``, held flat."""
    if not len(values):
        return np.zeros(len(at))
    return np.full(len(at), float(values[times > times[-1] - level_window].mean()))


@register_forecaster("mean")
def window_mean(times: NDArray[np.float64], values: NDArray[np.float64], at: NDArray[np.float64],
                level_window: float) -> NDArray[np.float64]:
    """The mean of the whole forecast window, held flat."""
    return np.full(len(at), float(values.mean()) if len(values) else 0.0)


# --------------------------------------------------------------------------- the problem and its solvers


@dataclass(frozen=True)
class PlanCosts:
    """A planning instance: minimise Σ_k stage[k, u_k] + change_cost·|u_k − u_{k-1}|.

    ``levels`` are the candidate counts (consecutive integers), ``stage`` has one row per step and
    one column per level, ``start`` is u_{-1} (one of the levels); ``max_up`` / ``max_down``
    bound the change per step (None: unbounded).
    """

    levels: NDArray[np.int64]
    stage: NDArray[np.float64]
    start: int
    change_cost: float = 0.0
    max_up: int | None = None
    max_down: int | None = None

    def transition(self) -> NDArray[np.float64]:
        """[i, j]: cost of moving from level i to level j (inf where the ramp limits forbid it)."""
        diff = self.levels[None, :] - self.levels[:, None]
        cost = self.change_cost * np.abs(diff).astype(np.float64)
        if self.max_up is not None:
            cost[diff > self.max_up] = np.inf
        if self.max_down is not None:
            cost[-diff > self.max_down] = np.inf
        return cost

    def total(self, plan: list[int] | NDArray[np.int64]) -> float:
        """Objective value of a plan (inf if it breaks a ramp limit)."""
        prev = self.start
        total = 0.0
        lo = int(self.levels[0])
        for k, u in enumerate(plan):
            diff = int(u) - prev
            if (self.max_up is not None and diff > self.max_up) or (self.max_down is not None and -diff > self.max_down):
                return math.inf
            total += float(self.stage[k, int(u) - lo]) + self.change_cost * abs(diff)
            prev = int(u)
        return total


@dataclass(frozen=True, slots=True)
class Plan:
    """The optimal counts of every step (only the first is applied) and the objective value."""

    replicas: tuple[int, ...]
    cost: float


def solve_dp(problem: PlanCosts) -> Plan:
    """Exact dynamic programme, backward over steps; ties go to the lowest count."""
    h, n = problem.stage.shape
    trans = problem.transition()
    value = np.zeros(n)
    choice = np.zeros((h, n), dtype=np.int64)
    for k in range(h - 1, -1, -1):
        q = trans + (problem.stage[k] + value)[None, :]  # [from, to]
        choice[k] = np.argmin(q, axis=1)  # argmin returns the first (lowest) minimiser
        value = q[np.arange(n), choice[k]]
    i = int(problem.start - problem.levels[0])
    if not math.isfinite(value[i]):
        raise ValueError("no feasible plan within the ramp limits")
    cost = float(value[i])
    plan = []
    for k in range(h):
        i = int(choice[k, i])
        plan.append(int(problem.levels[i]))
    return Plan(tuple(plan), cost)


def solve_milp(problem: PlanCosts) -> Plan:
    """The same problem as a MILP for SciPy's HiGHS (``scipy.optimize.milp``).

    x[k, j] ∈ {0, 1} picks level j at step k (Σ_j x[k, j] = 1); u_k = Σ_j level_j x[k, j];
    the ramp limits are linear in u; |u_k − u_{k-1}| is linearised by z_k >= ±(u_k − u_{k-1}).
    """
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import lil_matrix
    except ImportError as exc:  # pragma: no cover - scipy is a test extra
        raise RuntimeError("solver 'milp' needs scipy (pip install scipy)") from exc
    h, n = problem.stage.shape
    lv = problem.levels.astype(np.float64)
    nx = h * n
    nvar = nx + h  # + one z per step
    c = np.concatenate([problem.stage.reshape(-1), np.full(h, problem.change_cost)])
    rows: list[tuple[dict[int, float], float, float]] = []
    for k in range(h):
        rows.append(({k * n + j: 1.0 for j in range(n)}, 1.0, 1.0))
    for k in range(h):
        # d_k = u_k − u_{k-1}; u_{-1} = start is a constant moved to the bounds.
        coef: dict[int, float] = {k * n + j: lv[j] for j in range(n)}
        const = 0.0
        if k == 0:
            const = float(problem.start)
        else:
            for j in range(n):
                coef[(k - 1) * n + j] = coef.get((k - 1) * n + j, 0.0) - lv[j]
        up = math.inf if problem.max_up is None else problem.max_up
        down = math.inf if problem.max_down is None else problem.max_down
        rows.append((coef, -down + const, up + const))
        # z_k - d_k >= 0 and z_k + d_k >= 0
        rows.append(({**{i: -v for i, v in coef.items()}, nx + k: 1.0}, -const, math.inf))
        rows.append(({**coef, nx + k: 1.0}, const, math.inf))
    a = lil_matrix((len(rows), nvar))
    lb = np.empty(len(rows))
    ub = np.empty(len(rows))
    for r, (coef, lo, hi) in enumerate(rows):
        for i, v in coef.items():
            a[r, i] = v
        lb[r], ub[r] = lo, hi
    integrality = np.concatenate([np.ones(nx), np.zeros(h)])
    bounds = Bounds(np.zeros(nvar), np.concatenate([np.ones(nx), np.full(h, np.inf)]))
    res = milp(c, constraints=LinearConstraint(a.tocsr(), lb, ub), integrality=integrality, bounds=bounds,
               options={"mip_rel_gap": 0.0})
    if res.x is None:
        raise ValueError(f"no feasible plan within the ramp limits ({res.message})")
    x = res.x[:nx].reshape(h, n)
    plan = tuple(int(problem.levels[int(np.argmax(x[k]))]) for k in range(h))
    return Plan(plan, problem.total(plan))


SOLVERS: dict[str, Callable[[PlanCosts], Plan]] = {"dp": solve_dp, "milp": solve_milp}


# --------------------------------------------------------------------------- configuration


class MPCConfig(ServiceModelConfig):
    #: ``tidal tune``'s range for the horizon: whole steps from 4 to 60 (the generic window range
    #: starts below one step, which the horizon's validation rejects).
    search_space: ClassVar[dict[str, str]] = {"horizon": "60s:900s:15s"}

    step: Duration = Field(15.0, gt=0, description="length of one planning step")
    horizon: Duration = Field(300.0, gt=0, description="how far ahead to plan (at least one step)")
    cold_start: Duration | None = Field(
        None, ge=0, description="delay until a requested replica serves; learnt from pods if unset"
    )
    forecaster: str = Field("linear_trend", description=f"rate forecaster: {', '.join(FORECASTERS)}")
    forecast_window: Duration = Field(120.0, gt=0, description="history the forecaster fits (its trend)")
    slo_model: Literal["utilization", "queueing"] = Field("utilization", description="what the penalty measures")
    target_utilization: float = Field(0.7, gt=0, le=1, description="utilization model: capacity to provision")
    slo: SLOConfig = Field(default_factory=lambda: SLOConfig(latency=0.5), validate_default=True,
                           description="queueing model: latency SLO (percentile form)")
    replica_cost: float = Field(1.0, ge=0, description="money per replica-hour")
    shortfall_cost: float = Field(10.0, ge=0, description="utilization model: money per replica-hour short")
    miss_cost: float = Field(0.01, ge=0, description="queueing model: money per request over the SLO's allowance")
    change_cost: float = Field(0.0, ge=0, description="money per replica added or removed")
    max_step_up: int | None = Field(None, ge=1, description="most replicas added per step (None: no limit)")
    max_step_down: int | None = Field(None, ge=1, description="most replicas removed per step (None: no limit)")
    min_replicas: int = Field(0, ge=0, description="lowest count the plan may use")
    max_replicas: int = Field(1000, ge=1, description="highest count the plan may use")
    solver: Literal["dp", "milp"] = Field("dp", description="dynamic programming (exact, default) or HiGHS MILP")

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, value: float, info: ValidationInfo) -> float:
        step = info.data.get("step")
        if step is not None and value < step:
            raise ValueError(f"must be at least one step ({step:g}s), got {value:g}s")
        if step is not None and value / step > 1000:
            raise ValueError(f"at most 1000 steps of {step:g}s, got {value / step:.0f}")
        return value

    @field_validator("forecaster")
    @classmethod
    def _forecaster(cls, value: str) -> str:
        if value not in FORECASTERS:
            raise ValueError(f"unknown forecaster {value!r}; choose one of {', '.join(FORECASTERS)}")
        return value

    @field_validator("slo")
    @classmethod
    def _slo(cls, slo: SLOConfig, info: ValidationInfo) -> SLOConfig:
        if info.data.get("slo_model") != "queueing":
            return slo
        if slo.mean is not None:
            raise ValueError("the queueing penalty needs a percentile SLO ({latency: ..., percentile: ...})")
        check_slo_against_service(slo, info.data)
        return slo

    @field_validator("max_replicas")
    @classmethod
    def _bounds(cls, value: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_replicas")
        if lo is not None and value < lo:
            raise ValueError(f"must be >= min_replicas ({lo}), got {value}")
        return value


# --------------------------------------------------------------------------- the policy


class MPCPolicy(Policy):
    """Receding-horizon plan of replica counts: replica cost + SLO penalty, cold start, ramp limits."""

    def __init__(self, config: MPCConfig) -> None:
        self.config = config
        self.slo = config.slo.to_slo()
        self.estimator = LoadEstimator(config)
        self.forecaster = FORECASTERS[config.forecaster]
        self.solver = SOLVERS[config.solver]
        self.steps = max(1, int(math.floor(config.horizon / config.step + 1e-9)))
        self.cold_start_seen = 0.0  # longest observed start-to-ready delay, when not configured

    # ------------------------------------------------------------------ decide
    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        sample = load_sample(obs, cfg.window, cfg.min_sample_utilization)
        if sample is None:
            return Decision(obs.replicas, reason="no metrics yet: hold")
        est = self.estimator.update(sample)
        self._learn_cold_start(obs)
        if est.service_time is None:
            if obs.ready == 0 and sample.arrival_rate > 0:
                return Decision(max(obs.replicas, 1), reason="no service-time estimate: scale from zero")
            return Decision(obs.replicas, reason="no service-time estimate yet: hold")
        delay = self._delay_steps()
        rates = self._forecast(obs, delay)
        service = cfg.service(est.service_time)
        note = ""
        model = cfg.slo_model
        if model == "queueing":
            try:
                check_feasible(service, self.slo)
            except InfeasibleSLO as exc:
                model, note = "utilization", f" ({exc}; planning with the utilization model)"
        problem = self.build(rates, service, model, obs.replicas, self._base(obs, delay), delay)
        plan = self.solver(problem)
        head = ",".join(str(u) for u in plan.replicas[:6]) + ("…" if len(plan.replicas) > 6 else "")
        return Decision(
            plan.replicas[0],
            reason=f"plan [{head}] over {self.steps}×{cfg.step:g}s, cold start {delay} steps; "
                   f"λ {rates[0]:.4g}→{rates[-1]:.4g}/s, E[S]={est.service_time * 1000:.4g}ms; "
                   f"cost {plan.cost:.4g}{note}",
        )

    # ------------------------------------------------------------------ model
    def build(self, rates: NDArray[np.float64], service: ServiceTime, model: str, current: int,
              base: NDArray[np.int64], delay: int) -> PlanCosts:
        """The planning instance for forecast ``rates`` (H + delay steps) from ``current`` replicas."""
        cfg = self.config
        hours = cfg.step / 3600.0
        lo = cfg.min_replicas
        start = min(max(current, lo), cfg.max_replicas)
        hi = min(max(self._enough(float(rates.max()), service, model), start, lo), cfg.max_replicas)
        levels = np.arange(lo, hi + 1, dtype=np.int64)
        penalty = self._penalty(rates, levels, service, model) * hours  # [rate step, level]
        h = self.steps
        stage = cfg.replica_cost * hours * levels[None, :].astype(np.float64) + penalty[delay:delay + h]
        if delay:
            # Steps before the first new replica can serve: the replicas already there, minus
            # any removed now (u_0 below them takes effect at once).
            serving = np.minimum(base[:, None], levels[None, :])  # [step j < delay, level of u_0]
            early = self._penalty_at(rates[:delay], serving, service, model) * hours
            stage[0] += early.sum(axis=0)
        return PlanCosts(levels, stage, start, cfg.change_cost, cfg.max_step_up, cfg.max_step_down)

    def _enough(self, peak: float, service: ServiceTime, model: str) -> int:
        """A count with no penalty at the peak forecast: no plan needs more."""
        cfg = self.config
        if peak <= 0:
            return 0
        if model == "utilization":
            return math.ceil(peak * service.mean / (cfg.concurrency * cfg.target_utilization) - 1e-9)
        try:
            return min_replicas_for_slo(peak, service, self.slo, concurrency=cfg.concurrency,
                                        arrival_cv=cfg.arrival_cv, max_replicas=cfg.max_replicas)
        except InfeasibleSLO:
            return cfg.max_replicas

    def _penalty(self, rates: NDArray[np.float64], levels: NDArray[np.int64], service: ServiceTime,
                 model: str) -> NDArray[np.float64]:
        """Penalty per hour for every (rate, level) pair."""
        grid = np.broadcast_to(levels[None, :], (len(rates), len(levels)))
        return self._penalty_at(rates, grid, service, model)

    def _penalty_at(self, rates: NDArray[np.float64], counts: NDArray[np.int64], service: ServiceTime,
                    model: str) -> NDArray[np.float64]:
        """Penalty per hour with ``counts[i, j]`` replicas serving at ``rates[i]``."""
        cfg = self.config
        lam = rates[:, None]
        if model == "utilization":
            needed = lam * service.mean / (cfg.concurrency * cfg.target_utilization)
            return cfg.shortfall_cost * np.maximum(needed - counts, 0.0)
        assert self.slo.percentile is not None
        allowed = 1.0 - self.slo.percentile
        uniq = np.unique(counts)
        positive = uniq[uniq > 0]
        miss = np.ones((len(rates), len(uniq)))
        if len(positive):
            tail = response_tail_grid(rates, positive * cfg.concurrency, service, self.slo.latency, cfg.arrival_cv)
            miss[:, uniq > 0] = tail
        index = np.searchsorted(uniq, counts)
        miss_at = np.take_along_axis(miss, index, axis=1)
        excess = np.maximum(miss_at - allowed, 0.0)
        return cfg.miss_cost * 3600.0 * lam * excess

    # ------------------------------------------------------------------ inputs
    def _forecast(self, obs: Observation, delay: int) -> NDArray[np.float64]:
        cfg = self.config
        times, values = obs.metrics.series("rps", cfg.forecast_window)
        starts = obs.time + np.arange(self.steps + delay) * cfg.step
        rates = np.asarray(self.forecaster(times, values, starts + 0.5 * cfg.step, cfg.window), dtype=np.float64)
        # A queued backlog is extra demand until it drains: spread it over the first drain_time.
        backlog = obs.metrics.last("queue_length") or 0.0
        if backlog > 0 and cfg.drain_time > 0:
            rates = rates + backlog / cfg.drain_time * (starts - obs.time < cfg.drain_time)
        return rates

    def _delay_steps(self) -> int:
        cold = self.config.cold_start if self.config.cold_start is not None else self.cold_start_seen
        return max(0, math.ceil(cold / self.config.step - 1e-9))

    def _learn_cold_start(self, obs: Observation) -> None:
        if self.config.cold_start is not None:
            return
        for pod in obs.pods:
            if pod.ready_at is not None:
                self.cold_start_seen = max(self.cold_start_seen, pod.ready_at - pod.started_at)

    def _base(self, obs: Observation, delay: int) -> NDArray[np.int64]:
        """Replicas serving at steps 0..delay-1 with no new request: ready ones, plus starting
        ones once their (estimated) cold start is over."""
        cfg = self.config
        if not obs.pods:
            return np.full(delay, obs.ready, dtype=np.int64)
        cold = cfg.cold_start if cfg.cold_start is not None else self.cold_start_seen
        starts = np.array([p.started_at for p in obs.pods if not p.ready and not p.draining])
        step_start = obs.time + np.arange(delay) * cfg.step
        starting = (starts[None, :] + cold <= step_start[:, None]).sum(axis=1) if len(starts) else 0
        return (obs.ready + np.asarray(starting)).astype(np.int64) * np.ones(delay, dtype=np.int64)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator.state_dict(), "cold_start_seen": self.cold_start_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.estimator.load_state_dict(state.get("estimator", {}))
        self.cold_start_seen = float(state.get("cold_start_seen", 0.0))

    def describe(self) -> str:
        c = self.config
        what = self.slo.label if c.slo_model == "queueing" else f"utilization {c.target_utilization:g}"
        return f"mpc({what}, horizon {c.horizon:g}s)"


register("mpc", MPCConfig, "receding-horizon plan over a rate forecast: replica cost + SLO penalty")(MPCPolicy)
