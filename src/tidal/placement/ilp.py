"""The cheapest replica mix as an integer program, solved by HiGHS (``scipy.optimize.milp``).

    minimise    Σ_i price_i · n_i
    subject to  Σ_i throughput_i · n_i >= demand / utilization_cap
                min_count_i <= n_i <= available_i,   n_i integer

Among mixes of the same (optimal) cost it returns one with the fewest replicas: a second solve
minimises Σ n_i subject to the cost staying at the optimum. That makes the answer unique in
cost and replica count (a zero-price type would otherwise be taken in any number) and is what an
operator wants: fewer, larger replicas when the price is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from tidal.placement.model import REL_TOL, Placement, Problem, ReplicaType, lp_bound, problem


def solve_ilp(types: Sequence[ReplicaType], demand: float, *, utilization_cap: float = 1.0,
              time_limit: float = 10.0) -> Placement:
    """The cheapest mix (then the fewest replicas) covering ``demand`` req/s at ``utilization_cap``.

    Raises :class:`~tidal.placement.model.InfeasibleDemand` when the available replicas cannot
    cover the demand. If HiGHS stops at ``time_limit`` seconds with a feasible mix, that mix is
    returned with ``optimal=False``; with none, ``RuntimeError`` (use
    :func:`tidal.placement.solve`, which then falls back to the heuristic).
    """
    return _solve(problem(types, demand, utilization_cap), time_limit)


def _solve(prob: Problem, time_limit: float) -> Placement:
    bound, _ = lp_bound(prob)
    n = len(prob.types)
    if prob.required <= float(prob.lower @ prob.capacity) * (1.0 + REL_TOL):
        # The minimum counts already cover the demand: nothing to decide.
        return prob.placement(prob.lower, lower_bound=bound, optimal=True, method="ilp")
    bounds = Bounds(prob.lower, prob.upper)
    integral = np.ones(n)
    cover = LinearConstraint(prob.capacity[None, :], lb=prob.required * (1.0 - REL_TOL), ub=np.inf)
    options = {"time_limit": float(time_limit), "mip_rel_gap": 0.0, "presolve": True}
    first = milp(prob.price, constraints=[cover], integrality=integral, bounds=bounds, options=options)
    counts = _counts(first, prob)
    if counts is None:
        raise RuntimeError(f"HiGHS found no mix within {time_limit:g}s ({first.message})")
    optimal = bool(first.status == 0)
    if optimal:
        cost = float(counts @ prob.price)
        budget = LinearConstraint(prob.price[None, :], lb=-np.inf, ub=cost + 1e-9 * max(1.0, cost))
        second = milp(np.ones(n), constraints=[cover, budget], integrality=integral, bounds=bounds, options=options)
        fewer = _counts(second, prob)
        if fewer is not None and float(fewer @ prob.price) <= cost + 1e-9 * max(1.0, cost):
            counts = fewer
    return prob.placement(counts, lower_bound=bound, optimal=optimal, method="ilp")


def _counts(result, prob: Problem) -> np.ndarray | None:
    """The solver's integer point, rounded and checked (None when it has none)."""
    if result.x is None:
        return None
    counts = np.rint(result.x)
    counts = np.clip(counts, prob.lower, prob.upper)
    if not prob.feasible(counts):
        # Rounding inside the solver's tolerance fell short: add the cheapest unit that fits.
        for i in sorted(range(len(counts)), key=lambda j: prob.price[j] / prob.capacity[j]):
            while counts[i] < prob.upper[i] and not prob.feasible(counts):
                counts[i] += 1
        if not prob.feasible(counts):
            return None
    return counts.astype(np.int64)
