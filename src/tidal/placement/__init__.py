"""Placement: the cheapest mix of replica types for a demand, and the cost–latency trade-off.

Pure algorithms, no I/O and no clock:

* :func:`solve` — the cheapest mix of :class:`ReplicaType` replicas (GPU kinds, instance types:
  throughput, price per hour, availability, minimum counts) covering a demand in req/s at a
  utilization cap; an integer program for HiGHS (:func:`solve_ilp`) or, for very many types, a
  greedy + local-search heuristic (:func:`solve_heuristic`) within one replica's price of optimal;
* :func:`pareto_front` — non-dominated (cost, predicted p99) mixes, sweeping the utilization cap
  through the queueing models of :mod:`tidal.queueing`; :func:`predict_latency` and
  :func:`cheapest_meeting` around it.

See ``docs/optimisation.md``.
"""

from __future__ import annotations

from tidal.placement.heuristic import solve_heuristic
from tidal.placement.ilp import solve_ilp
from tidal.placement.model import InfeasibleDemand, Placement, ReplicaType
from tidal.placement.pareto import (
    DEFAULT_CAPS,
    ParetoPoint,
    cheapest_meeting,
    non_dominated,
    pareto_front,
    predict_latency,
)
from tidal.placement.solver import ILP_MAX_TYPES, Method, solve

__all__ = [
    "DEFAULT_CAPS",
    "ILP_MAX_TYPES",
    "Method",
    "InfeasibleDemand",
    "ParetoPoint",
    "Placement",
    "ReplicaType",
    "cheapest_meeting",
    "non_dominated",
    "pareto_front",
    "predict_latency",
    "solve",
    "solve_heuristic",
    "solve_ilp",
]
