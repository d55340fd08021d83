"""The scenario file: workload, service model, balancer, bounds, control timing, cost, SLO, policy.

Every model forbids unknown keys, so a typo is an error naming its field path. See
``docs/scenario.md`` for the reference with examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tidal.config.fields import Duration, Rate


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- distributions


class DistributionSpec(Spec):
    """A non-negative random duration (service time, cold start).

    ``deterministic`` uses ``mean``; ``exponential`` uses ``mean``; ``lognormal`` and ``gamma``
    use ``mean`` and coefficient of variation ``cv``; ``empirical`` resamples ``values``. A plain
    duration (``50ms``) is shorthand for a deterministic distribution.
    """

    distribution: Literal["deterministic", "exponential", "lognormal", "gamma", "empirical"]
    mean: Duration | None = Field(None, ge=0)
    cv: float = Field(1.0, gt=0)
    values: list[Duration] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, (int, float, str)) and not isinstance(data, bool):
            return {"distribution": "deterministic", "mean": data}
        return data

    @model_validator(mode="after")
    def _check(self) -> DistributionSpec:
        if self.distribution == "empirical":
            if not self.values:
                raise ValueError("an empirical distribution needs a non-empty 'values' list")
            if min(self.values) < 0:
                raise ValueError("empirical values must be >= 0")
        elif self.mean is None:
            raise ValueError(f"a {self.distribution} distribution needs 'mean'")
        return self

    @property
    def expected(self) -> float:
        if self.distribution == "empirical":
            assert self.values is not None
            return sum(self.values) / len(self.values)
        assert self.mean is not None
        return self.mean


# --------------------------------------------------------------------------- workloads


class ConstantWorkload(Spec):
    kind: Literal["constant"]
    rate: Rate = Field(ge=0)


class StepWorkload(Spec):
    """``rate`` until ``at``, then ``to``."""

    kind: Literal["step"]
    rate: Rate = Field(ge=0)
    to: Rate = Field(ge=0)
    at: Duration = Field(ge=0)


class RampWorkload(Spec):
    """Linear from ``start_rate`` at ``start`` to ``end_rate`` at ``end``; flat outside."""

    kind: Literal["ramp"]
    start_rate: Rate = Field(ge=0)
    end_rate: Rate = Field(ge=0)
    start: Duration = Field(0.0, ge=0)
    end: Duration = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> RampWorkload:
        if self.end <= self.start:
            raise ValueError("ramp 'end' must be after 'start'")
        return self


class DiurnalWorkload(Spec):
    """Sinusoid between ``trough`` and ``peak`` with ``period``, peaking at ``peak_at``."""

    kind: Literal["diurnal"]
    peak: Rate = Field(ge=0)
    trough: Rate = Field(ge=0)
    period: Duration = Field(86400.0, gt=0)
    peak_at: Duration = Field(50400.0, ge=0)

    @model_validator(mode="after")
    def _order(self) -> DiurnalWorkload:
        if self.trough > self.peak:
            raise ValueError("diurnal 'trough' must not exceed 'peak'")
        return self


class SpikeWorkload(Spec):
    """Flash crowd: ``base`` rate, rising linearly over ``rise`` from ``at`` to ``peak``, holding
    for ``duration``, then decaying linearly back to ``base`` over ``decay``."""

    kind: Literal["spike"]
    base: Rate = Field(ge=0)
    peak: Rate = Field(ge=0)
    at: Duration = Field(ge=0)
    rise: Duration = Field(10.0, ge=0)
    duration: Duration = Field(60.0, ge=0)
    decay: Duration = Field(60.0, ge=0)


class BurstyWorkload(Spec):
    """Markov-modulated Poisson process: state ``i`` emits at ``rates[i]`` and lasts an
    exponential time with mean ``mean_durations[i]`` before moving to another state uniformly."""

    kind: Literal["bursty"]
    rates: list[Rate] = Field(min_length=2)
    mean_durations: list[Duration] = Field(min_length=2)

    @model_validator(mode="after")
    def _shape(self) -> BurstyWorkload:
        if len(self.rates) != len(self.mean_durations):
            raise ValueError("'rates' and 'mean_durations' must have the same length")
        if min(self.rates) < 0:
            raise ValueError("rates must be >= 0")
        if min(self.mean_durations) <= 0:
            raise ValueError("mean_durations must be > 0")
        return self


class TraceWorkload(Spec):
    """Replay of a recorded trace.

    ``format: request`` — one row per request with a timestamp column (seconds, milliseconds or
    date-time strings) and optional size column (e.g. tokens). ``format: rate`` — one row per
    interval with a count column; arrivals are spread as a Poisson process inside each interval.
    ``preset`` fills the column names of a shipped trace. ``time_scale`` stretches time (0.5 =
    twice as fast), ``rate_scale`` multiplies the arrival rate, ``start``/``end`` cut a window
    (trace time, before scaling).
    """

    kind: Literal["trace"]
    path: Path
    format: Literal["request", "rate"] = "request"
    preset: Literal["azure_llm", "azure_functions", "nasa_http", "mooncake"] | None = None
    timestamp_column: str | None = None
    timestamp_unit: Literal["s", "ms", "us", "datetime"] | None = None
    size_column: str | None = None
    key_column: str | None = None
    count_column: str | None = None
    interval: Duration | None = Field(None, gt=0)
    time_scale: float = Field(1.0, gt=0)
    rate_scale: float = Field(1.0, gt=0)
    start: Duration | None = Field(None, ge=0)
    end: Duration | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _window(self) -> TraceWorkload:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("trace window 'end' must be after 'start'")
        return self


WorkloadSpec = Annotated[
    ConstantWorkload | StepWorkload | RampWorkload | DiurnalWorkload | SpikeWorkload | BurstyWorkload | TraceWorkload,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- service


class ResourceSpec(Spec):
    """One resource of a replica: what the pod requests and how its usage depends on work.

    usage = ``idle`` + ``per_busy_slot`` x (busy slots) + ``per_request`` x (requests in the
    replica), averaged over the scrape window.
    """

    request: float = Field(gt=0)
    idle: float = Field(0.0, ge=0)
    per_busy_slot: float = Field(0.0, ge=0)
    per_request: float = Field(0.0, ge=0)


class WarmupSpec(Spec):
    duration: Duration = Field(0.0, ge=0)
    slowdown: float = Field(1.0, ge=1.0, description="service-time multiplier while warming up")


class ServiceSpec(Spec):
    service_time: DistributionSpec
    size_coefficient: Duration = Field(0.0, ge=0, description="seconds of service added per unit of request size")
    concurrency: int = Field(1, ge=1, le=4096, description="requests a replica serves at once (slots)")
    queue_limit: int = Field(1024, ge=0, le=1_000_000, description="requests waiting per replica beyond its slots")
    timeout: Duration | None = Field(None, gt=0, description="drop a request that waits longer than this")
    cold_start: DistributionSpec = Field(default_factory=lambda: DistributionSpec(distribution="deterministic", mean=0.0))
    warmup: WarmupSpec = Field(default_factory=WarmupSpec)
    mtbf: Duration | None = Field(None, gt=0, description="mean time between crashes of one replica")
    resources: dict[Literal["cpu", "memory", "gpu"], ResourceSpec] = Field(default_factory=dict)


# --------------------------------------------------------------------------- the rest


class LoadBalancerSpec(Spec):
    algorithm: Literal[
        "round_robin",
        "weighted_round_robin",
        "random",
        "least_connections",
        "power_of_two",
        "consistent_hash",
        "central_queue",
    ] = "power_of_two"
    buffer_limit: int = Field(1000, ge=0, description="requests buffered while no replica is ready")
    buffer_timeout: Duration | None = Field(None, gt=0, description="drop buffered requests older than this")
    hash_replicas: int = Field(100, ge=1, description="virtual nodes per replica on the hash ring")


class ReplicaSpec(Spec):
    min: int = Field(1, ge=0)
    max: int = Field(100, ge=1, le=100_000)
    initial: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _order(self) -> ReplicaSpec:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.initial is not None and not self.min <= self.initial <= self.max:
            raise ValueError(f"initial ({self.initial}) must lie in [min, max] = [{self.min}, {self.max}]")
        return self

    @property
    def initial_count(self) -> int:
        return self.min if self.initial is None else self.initial


def periods_nest(a: float, b: float) -> bool:
    """Whether the longer of two periods is a whole multiple of the shorter (the simulator's tick
    is the shorter of the sync period and the scrape interval, so they must nest)."""
    ratio = max(a, b) / min(a, b)
    return abs(ratio - round(ratio)) <= 1e-9


class ControlSpec(Spec):
    """When the policy decides and sees metrics. Unset periods take the policy's upstream cadence
    (``tidal.policy.effective_control``: KPA 2 s / 1 s, HPA and KEDA 15 s, others 15 s)."""

    sync_period: Duration | None = Field(None, gt=0, description="default: the policy's upstream cadence, else 15s")
    scrape_interval: Duration | None = Field(None, gt=0, description="default: the policy's, else the sync period")
    metrics_lag: Duration = Field(0.0, ge=0)
    actuation_delay: Duration = Field(0.0, ge=0)

    @property
    def sync(self) -> float:
        """The sync period of a resolved spec (see ``effective_control``)."""
        if self.sync_period is None:
            raise ValueError("control.sync_period is unresolved: pass the spec through effective_control first")
        return self.sync_period

    @property
    def scrape(self) -> float:
        return self.sync if self.scrape_interval is None else self.scrape_interval


class CostSpec(Spec):
    replica_hour: float = Field(1.0, ge=0, description="price of one replica for one hour")


class SLOSpec(Spec):
    latency: Duration = Field(1.0, gt=0, description="a request meets the SLO if its latency is at most this")
    target: float = Field(0.99, gt=0, le=1, description="fraction of requests that must meet it")


class Scenario(Spec):
    """A whole simulation: what traffic, what service, which policy, for how long."""

    name: str = "scenario"
    description: str = ""
    seed: int = Field(0, ge=0)
    duration: Duration | None = Field(None, gt=0, description="defaults to the trace length")
    workload: WorkloadSpec
    service: ServiceSpec
    load_balancer: LoadBalancerSpec = Field(default_factory=LoadBalancerSpec)
    replicas: ReplicaSpec = Field(default_factory=ReplicaSpec)
    control: ControlSpec = Field(default_factory=ControlSpec)
    cost: CostSpec = Field(default_factory=CostSpec)
    slo: SLOSpec = Field(default_factory=SLOSpec)
    policy: dict[str, Any] = Field(default_factory=lambda: {"name": "target_utilization"})

    @field_validator("policy")
    @classmethod
    def _policy_name(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "name" not in value:
            raise ValueError("a policy block needs a 'name'")
        return value
