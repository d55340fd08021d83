"""``queueing``: size the fleet with a queueing model so a latency SLO holds.

Each decision estimates the arrival rate λ and the mean service time E[S] from metrics, smooths
both with an EWMA, and asks :mod:`tidal.queueing.planning` for the fewest replicas ``n`` whose
G/G/c model (``c = n × concurrency`` slots behind one queue) meets the SLO at ``headroom × λ``:

* λ is the mean ``rps`` over ``window`` (arrivals, dropped ones included: that is the demand);
* E[S] is configured (``service_time``) or estimated by Little's law on the servers:
  busy slots = ``utilization × ready × concurrency`` = throughput × E[S], with throughput =
  ``rps − drops −`` the growth of ``queue_length`` (requests piling up in queues arrived but
  did not complete);
* the service-time CV and the interarrival CV are configured (defaults 1: M/M/c).

The model pools all slots into one queue, as tidal's ``central_queue`` balancer (Knative's
activator) does; behind per-replica queues the latency is somewhat worse, which ``headroom``
absorbs. ``ServiceModelConfig`` and :class:`LoadEstimator` are shared with the ``mpc`` policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tidal.config.fields import Duration
from tidal.core.types import Decision, MetricsWindow, Observation
from tidal.policy.base import Policy
from tidal.policy.registry import PolicyConfig, register
from tidal.queueing.estimation import Ewma, service_time_from_load
from tidal.queueing.planning import InfeasibleSLO, LatencySLO, check_feasible, min_replicas_for_slo
from tidal.queueing.service import ServiceTime, service_time

# --------------------------------------------------------------------------- configuration


class SLOConfig(BaseModel):
    """``{latency: 200ms, percentile: 0.99}`` (P(response <= latency) >= percentile) or ``{mean: 150ms}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    latency: Duration | None = Field(None, gt=0, description="latency bound of the percentile SLO")
    percentile: float = Field(0.99, gt=0, lt=1, description="fraction of requests within `latency`")
    mean: Duration | None = Field(None, gt=0, description="bound on the mean response time instead")

    @model_validator(mode="after")
    def _one_kind(self) -> SLOConfig:
        if (self.latency is None) == (self.mean is None):
            raise ValueError("give either 'latency' (with optional 'percentile') or 'mean'")
        if self.mean is not None and "percentile" in self.model_fields_set:
            raise ValueError("'percentile' applies to 'latency', not to 'mean'")
        return self

    def to_slo(self) -> LatencySLO:
        if self.mean is not None:
            return LatencySLO(self.mean, None)
        assert self.latency is not None
        return LatencySLO(self.latency, self.percentile)


class ServiceModelConfig(PolicyConfig):
    """How a model-based policy learns λ and E[S] (shared by ``queueing`` and ``mpc``)."""

    concurrency: int = Field(1, ge=1, description="requests a replica serves at once (slots)")
    service_time: Duration | None = Field(None, gt=0, description="mean service time; estimated online if unset")
    service_cv: float = Field(1.0, ge=0, description="coefficient of variation of the service time")
    service_distribution: Literal["gamma", "lognormal"] = Field("gamma", description="shape of the service time")
    arrival_cv: float = Field(1.0, ge=0, description="coefficient of variation of interarrival times (1: Poisson)")
    window: Duration = Field(15.0, gt=0, description="averaging window over scraped metrics")
    rate_half_life: Duration = Field(60.0, ge=0, description="EWMA half-life of the arrival-rate estimate (0: none)")
    service_half_life: Duration = Field(120.0, ge=0, description="EWMA half-life of the service-time estimate (0: none)")
    min_sample_utilization: float = Field(
        0.05, ge=0, lt=1, description="ignore service-time samples below this utilization (too noisy)"
    )
    drain_time: Duration = Field(30.0, ge=0, description="clear a queued backlog within this long (0: ignore backlog)")

    def service(self, mean: float) -> ServiceTime:
        return service_time(mean, self.service_cv, self.service_distribution)


class QueueingConfig(ServiceModelConfig):
    slo: SLOConfig = Field(default_factory=lambda: SLOConfig(latency=0.5), validate_default=True,
                           description="latency SLO to size for (default p99 ≤ 500ms)")
    headroom: float = Field(1.0, ge=1.0, description="size for headroom × the estimated arrival rate")
    max_replicas: int = Field(10_000, ge=1, description="upper end of the sizing search")

    @field_validator("slo")
    @classmethod
    def _feasible(cls, slo: SLOConfig, info: ValidationInfo) -> SLOConfig:
        check_slo_against_service(slo, info.data)
        return slo


def check_slo_against_service(slo: SLOConfig, data: dict[str, Any]) -> None:
    """With a configured service time, reject an SLO that no replica count can meet."""
    mean = data.get("service_time")
    if mean is None or "service_cv" not in data or "service_distribution" not in data:
        return  # estimated online (the decision reason reports infeasibility), or already invalid
    try:
        check_feasible(service_time(mean, data["service_cv"], data["service_distribution"]), slo.to_slo())
    except InfeasibleSLO as exc:
        field = "mean" if slo.mean is not None else "latency"
        raise ValueError(f"{field}: {exc} (service_time={mean:g}s)") from None


# --------------------------------------------------------------------------- observation → estimates


#: A sample at or above this utilization is saturated: its arrivals say nothing about capacity
#: unless the backlog's growth is known.
SATURATED = 0.98


@dataclass(frozen=True, slots=True)
class LoadSample:
    """What the metrics of one window say about load and capacity.

    ``arrival_rate``, ``utilization`` and ``ready`` are window means (for the sizing and the
    decision's reason). ``busy_replicas`` and ``throughput`` are sums over the window's usable
    scrapes (``scrapes`` of them) of ``utilization × ready`` and of completions per second; their
    ratio times the concurrency is the mean service time (Little's law on the servers).
    """

    time: float
    arrival_rate: float
    utilization: float | None
    ready: float
    busy_replicas: float
    throughput: float
    scrapes: int


def load_sample(obs: Observation, window: float, min_utilization: float = 0.05) -> LoadSample | None:
    """Read the metrics of the last ``window`` seconds; None before the first scrape.

    Per scrape, completions = arrivals − drops − growth of ``queue_length`` since the previous
    scrape: under overload the arrivals overstate what completed, and taking them at face value
    would shrink the service-time estimate exactly when capacity is short. A scrape is usable
    for the service time when its utilization is at least ``min_utilization`` (lower is noise),
    the ready count did not change since the previous scrape, and, if saturated, the backlog's
    growth is known (the scrape before it is in the history).
    """
    m = obs.metrics
    times, rps = m.series("rps", window)
    if not len(rps):
        return None
    # One window further back, to find the queue sample preceding the window's first scrape.
    q_times, q_values = m.series("queue_length", 2.0 * window)
    queue = dict(zip(q_times.tolist(), q_values.tolist(), strict=True))
    drops = _by_time(m, "drops", window)
    util = _by_time(m, "utilization", window)
    r_times, r_values = m.series("ready_replicas", 2.0 * window)
    ready_by_time = dict(zip(r_times.tolist(), r_values.tolist(), strict=True))
    busy = throughput = 0.0
    usable = 0
    for t, arrivals in zip(times.tolist(), rps.tolist(), strict=True):
        u = util.get(t)
        ready = ready_by_time.get(t, float(obs.ready))
        if u is None or u < max(min_utilization, 1e-12) or ready <= 0:
            continue
        # Utilization is averaged over the replicas serving during the scrape, the ready count
        # is read at its end: across a change the two disagree, so skip such scrapes.
        if _previous(r_times, ready_by_time, t) not in (None, ready):
            continue
        growth = _growth(q_times, queue, t)
        if growth is None and u >= SATURATED:
            continue
        usable += 1
        busy += u * ready
        throughput += max(arrivals - drops.get(t, 0.0) - (growth or 0.0), 0.0)
    ready_mean = m.mean("ready_replicas", window)
    return LoadSample(
        time=obs.time,
        arrival_rate=float(rps.mean()),
        utilization=m.mean("utilization", window),
        ready=float(obs.ready) if ready_mean is None else ready_mean,
        busy_replicas=busy,
        throughput=throughput,
        scrapes=usable,
    )


def _by_time(m: MetricsWindow, name: str, window: float) -> dict[float, float]:
    times, values = m.series(name, window)
    return dict(zip(times.tolist(), values.tolist(), strict=True))


def _previous(times: np.ndarray, values: dict[float, float], t: float) -> float | None:
    """The sample before the one at ``t`` (None if there is none)."""
    i = int(np.searchsorted(times, t, side="left"))
    return values[float(times[i - 1])] if i > 0 else None


def _growth(q_times: np.ndarray, queue: dict[float, float], t: float) -> float | None:
    """Backlog growth rate into the scrape at ``t`` (None without both ends)."""
    if t not in queue:
        return None
    i = int(np.searchsorted(q_times, t, side="left"))
    if i == 0:
        return None
    prev = float(q_times[i - 1])
    return (queue[t] - queue[prev]) / (t - prev)


@dataclass(frozen=True, slots=True)
class Estimate:
    """λ (per second) and E[S] (seconds, None until known); ``measured`` says where E[S] came from."""

    arrival_rate: float
    service_time: float | None
    measured: bool


class LoadEstimator:
    """EWMA-smoothed arrival rate and (unless configured) service time, resumable via state_dict.

    The rate the sizing uses is the larger of the smoothed rate and the latest window's mean:
    a surge is answered at once, while a lull lowers the estimate only as fast as the EWMA lets
    it (scale-downs are the ones worth smoothing). The service time is a property of the model
    server, not of the traffic, so its EWMA is slow.
    """

    def __init__(self, config: ServiceModelConfig) -> None:
        self.config = config
        self.rate = Ewma(config.rate_half_life)
        self.service = Ewma(config.service_half_life)

    def update(self, sample: LoadSample) -> Estimate:
        cfg = self.config
        rate = max(self.rate.update(sample.time, sample.arrival_rate), sample.arrival_rate)
        if cfg.service_time is not None:
            return Estimate(rate, cfg.service_time, measured=False)
        measured = service_time_from_load(sample.throughput, 1.0, sample.busy_replicas, cfg.concurrency)
        if measured is not None:
            self.service.update(sample.time, measured)
        return Estimate(rate, self.service.value, measured=True)

    def state_dict(self) -> dict[str, Any]:
        return {"rate": self.rate.state_dict(), "service_time": self.service.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rate.load_state_dict(state.get("rate", {}))
        self.service.load_state_dict(state.get("service_time", {}))


def scale_from_zero(obs: Observation, sample: LoadSample) -> bool:
    """True when no replica is ready but requests arrive or wait (the buffer holds them)."""
    return obs.ready == 0 and (sample.arrival_rate > 0 or (obs.metrics.last("concurrency") or 0.0) > 0)


# --------------------------------------------------------------------------- the policy


class QueueingPolicy(Policy):
    """Fewest replicas whose G/G/c model meets a latency SLO at the estimated load."""

    def __init__(self, config: QueueingConfig) -> None:
        self.config = config
        self.slo = config.slo.to_slo()
        self.estimator = LoadEstimator(config)

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        sample = load_sample(obs, cfg.window, cfg.min_sample_utilization)
        if sample is None:
            return Decision(obs.replicas, reason="no metrics yet: hold")
        est = self.estimator.update(sample)
        if sample.arrival_rate == 0.0 and (obs.metrics.last("concurrency") or 0.0) == 0.0:
            return Decision(0, reason="idle: no arrivals in the window")
        if est.service_time is None:
            if scale_from_zero(obs, sample):
                return Decision(max(obs.replicas, 1), reason="no ready replica: scale from zero")
            return Decision(obs.replicas, reason="no service-time estimate yet: hold")
        # A backlog that built up (cold starts, a surge) drains only with capacity beyond λ.
        backlog = obs.metrics.last("queue_length") or 0.0
        drain = backlog / cfg.drain_time if cfg.drain_time > 0 else 0.0
        lam = est.arrival_rate * cfg.headroom + drain
        if lam <= 0.0:
            return Decision(0, reason="idle")
        service = cfg.service(est.service_time)
        where = "est" if est.measured else "cfg"
        basis = f"λ={est.arrival_rate:.4g}/s E[S]={est.service_time * 1000:.4g}ms({where})"
        if drain > 0:
            basis += f" +{drain:.3g}/s backlog"
        try:
            n = min_replicas_for_slo(lam, service, self.slo, concurrency=cfg.concurrency,
                                     arrival_cv=cfg.arrival_cv, max_replicas=cfg.max_replicas)
        except InfeasibleSLO as exc:
            n, note = self._fallback(lam, service, exc)
            return Decision(n, reason=f"{basis}: {note}")
        return Decision(n, reason=f"{basis} → {n} for {self.slo.label}")

    def _fallback(self, lam: float, service: ServiceTime, exc: InfeasibleSLO) -> tuple[int, str]:
        """The SLO cannot be met: size so queueing adds little to what the service time allows."""
        cfg = self.config
        if exc.field == "max_replicas":
            return cfg.max_replicas, str(exc)
        # 25 % above the best achievable figure: unlimited replicas could not do better by more.
        if self.slo.percentile is None:
            relaxed = LatencySLO(1.25 * service.mean, None)
        else:
            relaxed = LatencySLO(1.25 * service.percentile(self.slo.percentile), self.slo.percentile)
        try:
            n = min_replicas_for_slo(lam, service, relaxed, concurrency=cfg.concurrency,
                                     arrival_cv=cfg.arrival_cv, max_replicas=cfg.max_replicas)
        except InfeasibleSLO:
            n = cfg.max_replicas
        return n, f"{exc}; sizing for {relaxed.label} instead"

    def state_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.estimator.load_state_dict(state.get("estimator", {}))

    def describe(self) -> str:
        return f"queueing({self.slo.label})"


register("queueing", QueueingConfig, "size for a latency SLO with a G/G/c queueing model and online estimates")(
    QueueingPolicy
)
