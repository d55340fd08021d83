"""Capacity planning for a latency SLO: the fewest replicas, their latency, and a cost table.

A replica serves ``concurrency`` requests at once, so ``n`` replicas behind one queue are
``c = n × concurrency`` servers of a G/G/c queue (:mod:`tidal.queueing.latency`). An SLO is
either a percentile — P(response <= latency) >= percentile — or a mean response time.

The search walks the Erlang B recursion upward once, as :mod:`tidal.queueing.sizing` does, so
sizing costs about as much as one Erlang C evaluation; the SLO is judged with exactly the model
the plan then reports, so the chosen ``n`` meets it and ``n - 1`` does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from . import _checks
from .erlang import erlang_b_step, erlang_c_from_b
from .latency import ResponseTime, ggc_response, response_from_erlang
from .service import ServiceTime

#: Percentiles every plan row reports.
REPORTED_PERCENTILES = (0.5, 0.95, 0.99)


class InfeasibleSLO(ValueError):
    """No number of replicas meets the SLO (the service time alone already misses it).

    ``field`` names the SLO part at fault, for error messages that point at the input.
    """

    def __init__(self, message: str, field: str = "latency") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class LatencySLO:
    """P(response <= ``latency``) >= ``percentile``; with ``percentile=None``, mean <= latency."""

    latency: float
    percentile: float | None = 0.99

    def __post_init__(self) -> None:
        _checks.positive("latency", self.latency)
        if self.percentile is not None:
            _checks.probability("percentile", self.percentile)

    @property
    def label(self) -> str:
        """``p99 ≤ 200ms`` or ``mean ≤ 200ms``."""
        return f"{percentile_label(self.percentile)} ≤ {_ms(self.latency)}"

    def attainment(self, model: ResponseTime) -> float:
        """P(response <= latency) under ``model``."""
        return float(model.response_cdf(self.latency))

    def met_by(self, model: ResponseTime) -> bool:
        if self.percentile is None:
            return model.mean_response <= self.latency
        return self.attainment(model) >= self.percentile


def percentile_label(p: float | None) -> str:
    """``p99``, ``p99.9``, ``p50``; ``mean`` for None."""
    if p is None:
        return "mean"
    return f"p{100.0 * p:.6g}"


def check_feasible(service: ServiceTime, slo: LatencySLO) -> None:
    """Raise :class:`InfeasibleSLO` when even unlimited replicas (no queueing) miss the SLO.

    With no wait the response time is the service time, and any queueing only adds to it, so
    the SLO is reachable only if the service time alone beats it: E[S] < latency for a mean SLO,
    P(S <= latency) > percentile for a percentile SLO (strictly: with a finite number of
    servers some requests always wait).
    """
    if slo.percentile is None:
        if service.mean >= slo.latency:
            raise InfeasibleSLO(
                f"infeasible: mean latency {_ms(slo.latency)} is not above the mean service time "
                f"{_ms(service.mean)}; no number of replicas can meet it"
            )
        return
    reachable = float(service.cdf(slo.latency))
    if reachable <= slo.percentile:
        needed = service.percentile(slo.percentile)
        raise InfeasibleSLO(
            f"infeasible: latency {_ms(slo.latency)} is below the service time's own "
            f"{percentile_label(slo.percentile)} ({_ms(needed)}; {service.describe()}): even with no queueing "
            f"only {reachable:.4%} of requests finish within it"
        )


def min_replicas_for_slo(
    lam: float,
    service: ServiceTime,
    slo: LatencySLO,
    *,
    concurrency: int = 1,
    arrival_cv: float = 1.0,
    max_replicas: int = 1_000_000,
) -> int:
    """Smallest replica count whose G/G/c model meets ``slo`` at arrival rate ``lam``.

    ``lam = 0`` needs no replica. Raises :class:`InfeasibleSLO` when the SLO is unreachable or
    needs more than ``max_replicas``.
    """
    lam = _checks.non_negative("lam", lam)
    concurrency = _checks.servers("concurrency", concurrency)
    check_feasible(service, slo)
    if lam == 0.0:
        return 0
    for model in _stable_models(lam, service, concurrency, arrival_cv, max_replicas):
        if slo.met_by(model):
            return model.servers // concurrency
    raise InfeasibleSLO(
        f"infeasible: {slo.label} at {lam:g}/s needs more than max_replicas={max_replicas} replicas",
        field="max_replicas",
    )


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One candidate replica count: its predicted latency, SLO attainment and cost.

    ``stable`` is False when the load exceeds the capacity (ρ >= 1); the latency figures are then
    ``inf`` and ``attainment`` 0. ``attainment`` is P(response <= SLO latency).
    """

    replicas: int
    servers: int
    utilization: float
    stable: bool
    p_wait: float
    mean_response: float
    percentiles: tuple[float, ...]
    attainment: float
    meets: bool
    cost_per_hour: float

    @property
    def p50(self) -> float:
        return self.percentiles[0]

    @property
    def p95(self) -> float:
        return self.percentiles[1]

    @property
    def p99(self) -> float:
        return self.percentiles[2]


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """The cheapest replica count for an SLO, and a table of its neighbours.

    ``rows`` covers ``replicas - below .. replicas + above`` (at least one replica); ``exact``
    is True when the model is exact (M/M/c: Poisson arrivals, exponential service).
    """

    arrival_rate: float
    service: ServiceTime
    concurrency: int
    arrival_cv: float
    slo: LatencySLO
    replica_cost: float
    replicas: int
    rows: tuple[PlanRow, ...]
    exact: bool

    @property
    def best(self) -> PlanRow:
        return next(row for row in self.rows if row.replicas == self.replicas)


def evaluate_replicas(
    lam: float,
    service: ServiceTime,
    replicas: int,
    slo: LatencySLO,
    *,
    concurrency: int = 1,
    arrival_cv: float = 1.0,
    replica_cost: float = 0.0,
) -> PlanRow:
    """Predicted latency, SLO attainment and hourly cost of ``replicas`` replicas."""
    lam = _checks.positive("lam", lam)
    servers = _checks.servers("replicas", replicas) * _checks.servers("concurrency", concurrency)
    cost = replicas * _checks.non_negative("replica_cost", replica_cost)
    rho = (lam / service.rate) / servers
    if rho >= 1.0:
        inf = math.inf
        return PlanRow(replicas, servers, rho, False, 1.0, inf, (inf,) * len(REPORTED_PERCENTILES), 0.0, False, cost)
    model = ggc_response(lam, service, servers, arrival_cv)
    return _row(model, replicas, slo, cost)


def plan_capacity(
    lam: float,
    service: ServiceTime,
    slo: LatencySLO,
    *,
    concurrency: int = 1,
    arrival_cv: float = 1.0,
    replica_cost: float = 0.0,
    below: int = 2,
    above: int = 3,
    max_replicas: int = 1_000_000,
) -> CapacityPlan:
    """Size for ``slo`` and tabulate ``replicas - below .. replicas + above``."""
    lam = _checks.positive("lam", lam)
    n = min_replicas_for_slo(lam, service, slo, concurrency=concurrency, arrival_cv=arrival_cv,
                             max_replicas=max_replicas)
    rows = tuple(
        evaluate_replicas(lam, service, k, slo, concurrency=concurrency, arrival_cv=arrival_cv,
                          replica_cost=replica_cost)
        for k in range(max(1, n - below), n + above + 1)
    )
    exact = service.is_exponential and arrival_cv == 1.0
    return CapacityPlan(lam, service, concurrency, arrival_cv, slo, replica_cost, n, rows, exact)


# --------------------------------------------------------------------------- internals


def _row(model: ResponseTime, replicas: int, slo: LatencySLO, cost: float) -> PlanRow:
    percentiles = tuple(model.response_percentile(p) for p in REPORTED_PERCENTILES)
    return PlanRow(
        replicas=replicas,
        servers=model.servers,
        utilization=model.utilization,
        stable=True,
        p_wait=model.p_wait,
        mean_response=model.mean_response,
        percentiles=percentiles,
        attainment=slo.attainment(model),
        meets=slo.met_by(model),
        cost_per_hour=cost,
    )


def _stable_models(
    lam: float, service: ServiceTime, concurrency: int, arrival_cv: float, max_replicas: int
) -> Iterator[ResponseTime]:
    """Models for every stable multiple of ``concurrency`` servers, one recursion step apart."""
    a = lam / service.rate
    b, k = 1.0, 0
    n = max(1, math.floor(a / concurrency))
    while n <= max_replicas:
        c = n * concurrency
        while k < c:
            k += 1
            b = erlang_b_step(b, k, a)
        rho = a / c
        if rho < 1.0:
            yield response_from_erlang(lam, service, c, arrival_cv, erlang_c_from_b(b, rho))
        n += 1


def _ms(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.4g}ms"
    return f"{seconds:.4g}s"
