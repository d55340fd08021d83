"""A fast heuristic for the cheapest replica mix: greedy by price per req/s, then local search.

**Greedy.** Start from the minimum counts and add replicas of the type with the lowest price per
req/s of throughput (then the next type once one runs out) until the demand is covered. This is
the LP relaxation's solution (:func:`~tidal.placement.model.lp_bound`) with its one fractional
count rounded up, so its cost is at most the LP bound plus the price of one replica:

    cost(greedy) <= LP <= OPT + max_i price_i      (and OPT >= LP)

**Local search.** Then repeat, until no move helps: drop one replica if the rest still covers
the demand; or take out one or two replicas of a type and cover the shortfall with the fewest
replicas of another type. A move is taken when it lowers the cost (or keeps it and lowers the
replica count), so the search ends, and never leaves the feasible set. Each sweep is vectorised
over the replacement type: O(types²) numpy work, fine for thousands of types where the integer
program may take long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tidal.placement.model import REL_TOL, Placement, Problem, ReplicaType, greedy_order, lp_bound, problem

#: Most replicas of one type a single local-search move takes out.
MAX_REMOVED = 2


def solve_heuristic(types: Sequence[ReplicaType], demand: float, *, utilization_cap: float = 1.0,
                    max_sweeps: int = 1000) -> Placement:
    """A feasible, near-cheapest mix (cost <= optimum + the highest price of one replica)."""
    return _solve(problem(types, demand, utilization_cap), max_sweeps)


def _solve(prob: Problem, max_sweeps: int = 1000) -> Placement:
    bound, _ = lp_bound(prob)
    counts = greedy(prob)
    counts = local_search(prob, counts, max_sweeps)
    return prob.placement(counts, lower_bound=bound, optimal=False, method="heuristic")


def greedy(prob: Problem) -> np.ndarray:
    """Minimum counts, then whole replicas in price-per-throughput order until covered."""
    counts = prob.lower.copy()
    residual = prob.required * (1.0 - REL_TOL) - float(counts @ prob.capacity)
    for i in greedy_order(prob):
        if residual <= 0.0:
            break
        need = math.ceil(residual / prob.capacity[i])
        take = min(prob.upper[i] - counts[i], need)
        counts[i] += take
        residual -= take * prob.capacity[i]
    return counts.astype(np.int64)


def local_search(prob: Problem, counts: np.ndarray, max_sweeps: int = 1000) -> np.ndarray:
    """Improve ``counts`` by drop and replace moves until none lowers (cost, replicas)."""
    counts = counts.astype(np.int64).copy()
    theta, price = prob.capacity, prob.price
    need = prob.required * (1.0 - REL_TOL)
    tol = 1e-12
    for _ in range(max_sweeps):
        improved = False
        capacity = float(counts @ theta)
        for i in range(len(counts)):
            for k in range(1, MAX_REMOVED + 1):
                if counts[i] - k < prob.lower[i]:
                    break
                deficit = need - (capacity - k * theta[i])
                if deficit <= 0.0:
                    # Still covered without them: dropping never costs more and saves replicas.
                    counts[i] -= k
                    improved = True
                    break
                # Replace the k replicas of type i by the fewest of each other type j.
                add = np.ceil(deficit / theta)
                room = prob.upper - counts
                room[i] = 0  # adding back type i undoes the move
                ok = add <= room
                if not ok.any():
                    continue
                delta_cost = add * price - k * price[i]
                delta_reps = add - k
                # Lexicographic (cost, replicas) improvement, cheapest first.
                better = ok & ((delta_cost < -tol * max(1.0, abs(price[i]))) |
                               ((np.abs(delta_cost) <= tol * max(1.0, abs(price[i]))) & (delta_reps < 0)))
                if not better.any():
                    continue
                j = int(np.argmin(np.where(better, delta_cost + 1e-15 * delta_reps, np.inf)))
                counts[i] -= k
                counts[j] += int(add[j])
                improved = True
                break
            if improved:
                break
        if not improved:
            break
    assert prob.feasible(counts), "local search left the feasible set"
    return counts
