"""Workloads: when requests arrive, how big they are, and which routing key they carry.

``build_workload(spec, seed)`` turns a scenario's workload block into a :class:`Workload` whose
``arrivals(start, end)`` the simulator pulls window by window.
"""

from tidal.workload.base import Arrivals, Workload
from tidal.workload.build import build_workload
from tidal.workload.synthetic import MMPPWorkload, PoissonWorkload
from tidal.workload.traces import RateTraceWorkload, RequestTraceWorkload

__all__ = [
    "Arrivals",
    "MMPPWorkload",
    "PoissonWorkload",
    "RateTraceWorkload",
    "RequestTraceWorkload",
    "Workload",
    "build_workload",
]
