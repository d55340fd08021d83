"""Cost against latency: predicted percentile latency of a mix, and the Pareto front of mixes.

**Latency of a mix.** The balancer splits arrivals over the types in proportion to their
capacity (weighted round robin / random), so every type runs at the same utilization
ρ = demand / total capacity. Type ``i`` then is a G/G/c queue with ``c = n_i × concurrency_i``
slots, arrival rate ``λ_i = demand × capacity_i / total`` and its own gamma service time
(:func:`tidal.queueing.latency.ggc_response`, exact M/M/c for exponential service and Poisson
arrivals). A request's response time is a mixture: P(T <= t) = Σ_i (λ_i / demand) P(T_i <= t),
and the percentile is found by bisection between the types' own percentiles. For one type this
is exactly :func:`tidal.queueing.planning.evaluate_replicas`.

**Front.** :func:`pareto_front` sweeps the utilization cap: for each cap it takes the cheapest
mix with capacity >= demand / cap (the integer program of :mod:`tidal.placement.ilp`), predicts
its latency, and keeps the non-dominated (cost, latency) points. A lower cap buys headroom, so
the sweep runs from cheap-and-slow to dear-and-fast. :func:`cheapest_meeting` picks the
cheapest point of a front that meets a latency SLO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tidal.placement.model import InfeasibleDemand, Placement, ReplicaType
from tidal.placement.solver import Method, solve
from tidal.queueing.latency import ggc_response
from tidal.queueing.service import service_time

#: Default utilization caps of the sweep: 30 % to 95 % in steps of 5 %, then 97.5 % and 99 %.
DEFAULT_CAPS: tuple[float, ...] = tuple(round(0.30 + 0.05 * i, 2) for i in range(14)) + (0.975, 0.99)


@dataclass(frozen=True)
class ParetoPoint:
    """One mix on the front: hourly ``cost``, predicted ``latency`` at ``percentile``, the cap used."""

    cost: float
    latency: float
    percentile: float
    utilization: float
    utilization_cap: float
    placement: Placement


def predict_latency(types: Sequence[ReplicaType], counts: Mapping[str, int], demand: float, *,
                    percentile: float = 0.99, arrival_cv: float = 1.0) -> float:
    """Predicted ``percentile`` of the response time (seconds) of ``counts`` serving ``demand`` req/s.

    ``inf`` when the mix cannot carry the demand (utilization >= 1). Every used type needs a
    ``service_time``.
    """
    if not 0.0 < percentile < 1.0:
        raise ValueError(f"percentile must lie strictly between 0 and 1, got {percentile!r}")
    if not (math.isfinite(demand) and demand > 0.0):
        raise ValueError(f"demand must be > 0 to predict a latency, got {demand!r}")
    by_name = {t.name: t for t in types}
    used = []
    for name, n in counts.items():
        if n < 0:
            raise ValueError(f"counts[{name!r}] must be >= 0, got {n}")
        if n == 0:
            continue
        if name not in by_name:
            raise ValueError(f"counts names unknown replica type {name!r}")
        rtype = by_name[name]
        if rtype.service_time is None:
            raise ValueError(f"replica type {name!r}: latency prediction needs its service_time")
        used.append((rtype, int(n)))
    total = sum(t.capacity * n for t, n in used)
    if total <= 0.0 or demand >= total:
        return math.inf
    models, weights = [], []
    for rtype, n in used:
        share = rtype.capacity * n / total
        svc = service_time(rtype.service_time, rtype.service_cv, "gamma")  # type: ignore[arg-type]
        models.append(ggc_response(demand * share, svc, n * rtype.concurrency, arrival_cv))
        weights.append(share)
    if len(models) == 1:
        return models[0].response_percentile(percentile)
    own = [m.response_percentile(percentile) for m in models]

    def cdf(t: float) -> float:
        return sum(w * float(m.response_cdf(t)) for w, m in zip(weights, models, strict=True))

    # The mixture's percentile lies between the components' (each CDF reaches the level at its
    # own percentile, so the weighted sum does at the largest and cannot at below the smallest).
    lo, hi = min(own), max(own)
    for _ in range(100):
        if hi - lo <= 1e-9 * hi:
            break
        mid = 0.5 * (lo + hi)
        if cdf(mid) >= percentile:
            hi = mid
        else:
            lo = mid
    return hi


def pareto_front(types: Sequence[ReplicaType], demand: float, *, percentile: float = 0.99,
                 caps: Iterable[float] = DEFAULT_CAPS, arrival_cv: float = 1.0,
                 method: Method = "auto") -> tuple[ParetoPoint, ...]:
    """Non-dominated (cost, predicted latency) mixes for ``demand``, sorted by cost (ascending).

    Along the result the cost strictly increases and the latency strictly decreases. Caps whose
    capacity the available replicas cannot provide are skipped; if none can be,
    :class:`~tidal.placement.model.InfeasibleDemand` is raised.
    """
    caps = sorted({float(c) for c in caps}, reverse=True)
    if not caps:
        raise ValueError("caps: give at least one utilization cap")
    for cap in caps:
        if not 0.0 < cap < 1.0:
            raise ValueError(f"caps: each utilization cap must lie strictly between 0 and 1, got {cap!r}")
    points: list[ParetoPoint] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    last_error: InfeasibleDemand | None = None
    for cap in caps:
        try:
            placement = solve(types, demand, utilization_cap=cap, method=method)
        except InfeasibleDemand as exc:
            last_error = exc
            continue
        key = tuple(sorted(placement.used().items()))
        if key in seen:
            continue
        seen.add(key)
        latency = predict_latency(types, placement.counts, demand, percentile=percentile, arrival_cv=arrival_cv)
        points.append(ParetoPoint(placement.cost, latency, percentile, placement.utilization, cap, placement))
    if not points:
        assert last_error is not None
        raise last_error
    return non_dominated(points)


def non_dominated(points: Iterable[ParetoPoint]) -> tuple[ParetoPoint, ...]:
    """The points no other point beats in both cost and latency, by cost ascending."""
    ordered = sorted(points, key=lambda p: (p.cost, p.latency))
    front: list[ParetoPoint] = []
    for p in ordered:
        # Sorted by cost then latency, so a point survives only if it is faster than every
        # cheaper (or equally cheap) point kept before it.
        if not front or p.latency < front[-1].latency:
            front.append(p)
    return tuple(front)


def cheapest_meeting(front: Sequence[ParetoPoint], latency: float) -> ParetoPoint:
    """The cheapest point of ``front`` whose predicted latency is at most ``latency`` seconds."""
    for p in sorted(front, key=lambda q: q.cost):
        if p.latency <= latency:
            return p
    best = min(front, key=lambda q: q.latency) if front else None
    detail = f"; the fastest predicts {best.latency:.4g}s at {best.cost:.4g}/h" if best else ""
    raise InfeasibleDemand(f"infeasible: no point of the front meets latency {latency:g}s{detail}")
