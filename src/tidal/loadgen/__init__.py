"""``tidal load``: an open-loop load generator that replays the simulator's workloads live.

Requests leave at the arrival times of ``build_workload(spec, seed).arrivals(start, end)`` — the
very stream the simulator serves for the same scenario and seed — whatever the server answers,
with a bounded number in flight as a safety cap. A closed-loop mode (``clients`` connections
sending back to back) measures maximum throughput. See ``docs/load.md``.
"""

from tidal.loadgen.generator import LoadGenerator, LoadResult, Progress, run_load
from tidal.loadgen.results import ERROR_KINDS, LoadSummary, Percentiles, RequestLog, summarize, timeline
from tidal.loadgen.schedule import Schedule, build_schedule, sim_chunk_seconds, workload_seed
from tidal.loadgen.spec import DEFAULT_BODY, LoadSpec, is_loopback_host, load_spec_from_dict

__all__ = [
    "DEFAULT_BODY",
    "ERROR_KINDS",
    "LoadGenerator",
    "LoadResult",
    "LoadSpec",
    "LoadSummary",
    "Percentiles",
    "Progress",
    "RequestLog",
    "Schedule",
    "build_schedule",
    "is_loopback_host",
    "load_spec_from_dict",
    "run_load",
    "sim_chunk_seconds",
    "summarize",
    "timeline",
    "workload_seed",
]
