"""The placement problem's values: replica types, the demand, and a chosen mix.

A :class:`ReplicaType` is one kind of replica (a GPU model, an instance type) with its throughput
(requests per second one replica serves at full utilization), its price per replica-hour, an
optional availability limit and an optional minimum count. The problem is to cover a demand of
``demand`` req/s with total throughput of at least ``demand / utilization_cap`` at the lowest
price (see :mod:`tidal.placement.ilp` and :mod:`tidal.placement.heuristic`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

#: Relative slack of the capacity constraint, so that float rounding of ``demand / cap`` never
#: makes an exactly sufficient mix (10 × 12.5 req/s for 125 req/s) look infeasible.
REL_TOL = 1e-9


class InfeasibleDemand(ValueError):
    """The demand exceeds what every available replica together can serve."""


@dataclass(frozen=True, slots=True)
class ReplicaType:
    """One kind of replica.

    Give ``throughput`` (req/s at full utilization) or ``service_time`` (mean seconds per
    request), from which ``throughput = concurrency / service_time``; latency predictions
    (:mod:`tidal.placement.pareto`) need ``service_time`` and use ``service_cv`` (gamma
    distributed service). ``available`` caps the count (``None``: unlimited), ``min_count`` is
    the fewest to run (e.g. reserved instances already paid for).
    """

    name: str
    price: float
    throughput: float | None = None
    service_time: float | None = None
    concurrency: int = 1
    service_cv: float = 1.0
    available: int | None = None
    min_count: int = 0

    def __post_init__(self) -> None:
        where = f"replica type {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"replica type name must be a non-empty string, got {self.name!r}")
        _finite(where, "price", self.price, minimum=0.0)
        if self.throughput is None and self.service_time is None:
            raise ValueError(f"{where}: give throughput (req/s per replica) or service_time (seconds)")
        if self.throughput is not None:
            _finite(where, "throughput", self.throughput, strict=True)
        if self.service_time is not None:
            _finite(where, "service_time", self.service_time, strict=True)
        _integer(where, "concurrency", self.concurrency, minimum=1)
        _finite(where, "service_cv", self.service_cv, minimum=0.0)
        _integer(where, "min_count", self.min_count, minimum=0)
        if self.available is not None:
            _integer(where, "available", self.available, minimum=0)
            if self.available < self.min_count:
                raise ValueError(f"{where}: available ({self.available}) must be >= min_count ({self.min_count})")
        if self.throughput is not None and self.service_time is not None:
            implied = self.concurrency / self.service_time
            if not math.isclose(implied, self.throughput, rel_tol=1e-6):
                raise ValueError(f"{where}: throughput {self.throughput:g}/s disagrees with concurrency / service_time "
                                 f"= {implied:g}/s; give one of them")

    @property
    def capacity(self) -> float:
        """Requests per second one replica serves at full utilization."""
        if self.throughput is not None:
            return float(self.throughput)
        assert self.service_time is not None
        return self.concurrency / self.service_time

    @property
    def cost_per_throughput(self) -> float:
        """Price per hour of one req/s of capacity (the greedy order)."""
        return self.price / self.capacity


def _finite(where: str, name: str, value: float, *, minimum: float | None = None, strict: bool = False) -> None:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not numeric or not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite number, got {value!r}")
    if strict and value <= 0:
        raise ValueError(f"{where}: {name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum:g}, got {value!r}")


def _integer(where: str, name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Placement:
    """A mix of replicas: ``counts`` per type name (every type, zeros included, in input order).

    ``cost`` is per hour, ``capacity`` the total req/s at full utilization, ``lower_bound`` the LP
    relaxation's cost (no mix can be cheaper), ``optimal`` whether the mix is proven cheapest,
    ``method`` which solver found it (``ilp`` or ``heuristic``).
    """

    counts: Mapping[str, int]
    cost: float
    capacity: float
    demand: float
    utilization_cap: float
    lower_bound: float
    optimal: bool
    method: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))

    @property
    def replicas(self) -> int:
        return sum(self.counts.values())

    @property
    def utilization(self) -> float:
        """Demand over capacity: the mean busy fraction the mix would run at."""
        return self.demand / self.capacity if self.capacity > 0 else (0.0 if self.demand == 0 else math.inf)

    @property
    def gap(self) -> float:
        """Cost above the lower bound (0 means provably optimal)."""
        return self.cost - self.lower_bound

    def used(self) -> dict[str, int]:
        """The non-zero counts."""
        return {name: n for name, n in self.counts.items() if n}

    def describe(self) -> str:
        mix = " + ".join(f"{n}×{name}" for name, n in self.used().items()) or "nothing"
        return f"{mix}: {self.cost:.4g}/h, {self.capacity:.4g} req/s ({self.utilization:.0%} utilized)"


@dataclass(frozen=True)
class Problem:
    """A validated instance as arrays (internal to the solvers)."""

    types: tuple[ReplicaType, ...]
    demand: float
    utilization_cap: float
    capacity: np.ndarray  # θ_i, req/s per replica
    price: np.ndarray  # p_i, per hour
    lower: np.ndarray  # min counts
    upper: np.ndarray  # availability (inf: unlimited)

    @property
    def required(self) -> float:
        """Capacity the mix must reach: demand / utilization_cap."""
        return self.demand / self.utilization_cap

    def feasible(self, counts: np.ndarray) -> bool:
        """Within bounds and covering the required capacity (to :data:`REL_TOL`)."""
        counts = np.asarray(counts)
        if (counts < self.lower).any() or (counts > self.upper).any():
            return False
        return float(counts @ self.capacity) >= self.required * (1.0 - REL_TOL)

    def placement(self, counts: np.ndarray, *, lower_bound: float, optimal: bool, method: str) -> Placement:
        counts = np.asarray(counts, dtype=np.int64)
        cost = float(counts @ self.price)
        return Placement(
            counts={t.name: int(n) for t, n in zip(self.types, counts, strict=True)},
            cost=cost,
            capacity=float(counts @ self.capacity),
            demand=self.demand,
            utilization_cap=self.utilization_cap,
            lower_bound=min(lower_bound, cost),
            optimal=optimal or cost <= lower_bound + 1e-9 * max(1.0, abs(lower_bound)),
            method=method,
        )


def problem(types: Sequence[ReplicaType], demand: float, utilization_cap: float = 1.0) -> Problem:
    """Validate an instance; raise :class:`InfeasibleDemand` when no mix can cover the demand."""
    types = tuple(types)
    if not types:
        raise ValueError("types: give at least one replica type")
    for t in types:
        if not isinstance(t, ReplicaType):
            raise ValueError(f"types: expected ReplicaType values, got {type(t).__name__}")
    names = [t.name for t in types]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"types: duplicate names {duplicates}")
    _finite("placement", "demand", demand, minimum=0.0)
    _finite("placement", "utilization_cap", utilization_cap, strict=True)
    if utilization_cap > 1.0:
        raise ValueError(f"placement: utilization_cap must lie in (0, 1], got {utilization_cap!r}")
    prob = Problem(
        types=types,
        demand=float(demand),
        utilization_cap=float(utilization_cap),
        capacity=np.array([t.capacity for t in types], dtype=np.float64),
        price=np.array([t.price for t in types], dtype=np.float64),
        lower=np.array([t.min_count for t in types], dtype=np.float64),
        upper=np.array([math.inf if t.available is None else t.available for t in types], dtype=np.float64),
    )
    most = float(np.where(np.isinf(prob.upper), math.inf, prob.upper * prob.capacity).sum())
    if most < prob.required * (1.0 - REL_TOL):
        limits = ", ".join(f"{t.name}: {t.available} × {t.capacity:g}/s" for t in types)
        cap_note = f" at utilization cap {utilization_cap:g}" if utilization_cap < 1.0 else ""
        raise InfeasibleDemand(
            f"infeasible: demand {demand:g} req/s{cap_note} needs {prob.required:g} req/s of capacity, "
            f"but all available replicas together give only {most:g} req/s ({limits})"
        )
    return prob


def lp_bound(prob: Problem) -> tuple[float, np.ndarray]:
    """The LP relaxation's optimum (cost, fractional counts).

    With one covering constraint the relaxation is a fractional knapsack: after the minimum
    counts, fill the remaining capacity with the types of lowest price per req/s, in order, the
    last one fractionally. Its cost is a lower bound on every integer mix.
    """
    counts = prob.lower.copy()
    residual = prob.required - float(counts @ prob.capacity)
    for i in greedy_order(prob):
        if residual <= 0.0:
            break
        take = min(prob.upper[i] - counts[i], residual / prob.capacity[i])
        counts[i] += take
        residual -= take * prob.capacity[i]
    return float(counts @ prob.price), counts


def greedy_order(prob: Problem) -> list[int]:
    """Types by price per req/s, then larger throughput first, then input order."""
    ratio = prob.price / prob.capacity
    return sorted(range(len(prob.types)), key=lambda i: (ratio[i], -prob.capacity[i], i))
