"""One entry point for the cheapest mix: the integer program, or the heuristic when it is too large."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tidal.placement.heuristic import solve_heuristic
from tidal.placement.ilp import solve_ilp
from tidal.placement.model import Placement, ReplicaType, problem

#: With ``method="auto"``, instances with more types than this go to the heuristic.
ILP_MAX_TYPES = 2000

Method = Literal["auto", "ilp", "heuristic"]


def solve(types: Sequence[ReplicaType], demand: float, *, utilization_cap: float = 1.0, method: Method = "auto",
          time_limit: float = 10.0) -> Placement:
    """The cheapest mix covering ``demand`` req/s with capacity ``>= demand / utilization_cap``.

    ``method="auto"`` solves the integer program unless there are more than
    :data:`ILP_MAX_TYPES` types, and falls back to the heuristic if HiGHS finds no mix within
    ``time_limit`` seconds (or keeps the better of the two when it stops with a non-optimal one).
    Raises :class:`InfeasibleDemand` when the available replicas cannot cover the demand and
    ``ValueError`` naming the field for bad input.
    """
    if method not in ("auto", "ilp", "heuristic"):
        raise ValueError(f"method must be 'auto', 'ilp' or 'heuristic', got {method!r}")
    problem(types, demand, utilization_cap)  # validate once, up front, for every method
    if method == "heuristic" or (method == "auto" and len(types) > ILP_MAX_TYPES):
        return solve_heuristic(types, demand, utilization_cap=utilization_cap)
    if method == "ilp":
        return solve_ilp(types, demand, utilization_cap=utilization_cap, time_limit=time_limit)
    try:
        exact = solve_ilp(types, demand, utilization_cap=utilization_cap, time_limit=time_limit)
    except RuntimeError:
        return solve_heuristic(types, demand, utilization_cap=utilization_cap)
    if exact.optimal:
        return exact
    fallback = solve_heuristic(types, demand, utilization_cap=utilization_cap)
    return fallback if (fallback.cost, fallback.replicas) < (exact.cost, exact.replicas) else exact
