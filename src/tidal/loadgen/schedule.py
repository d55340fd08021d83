"""When requests leave: the simulator's arrival process, cut into chunks and time-scaled.

The schedule pulls ``build_workload(spec, seed).arrivals(start, end)`` window by window, exactly
as the simulator does, so a scenario replayed live sends the requests the simulator serves:
same seed derivation (:func:`workload_seed`), same chunking (:func:`sim_chunk_seconds`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tidal.config.scenario import ControlSpec
from tidal.core.errors import TidalInputError
from tidal.policy.registry import effective_control
from tidal.workload import Arrivals, Workload, build_workload

#: The simulator's arrival chunk (``tidal.sim.simulator.CHUNK_SECONDS``); keep the two equal.
SIM_CHUNK_SECONDS = 60.0


def workload_seed(seed: int) -> int:
    """The workload seed the simulator derives from a scenario seed (first of four streams)."""
    return int(np.random.SeedSequence(seed).spawn(4)[0].generate_state(1)[0])


def sim_chunk_seconds(control: ControlSpec, policy: Mapping[str, Any] | str = "") -> float:
    """The simulator's arrival chunk for these control timings: a whole number of ticks near 60 s.

    Windows of a synthetic workload that start and end on the same instants draw the same random
    numbers, so matching the simulator's chunks reproduces its arrivals exactly. ``policy`` (its
    block or name) supplies the cadence of an unset sync period, as in the simulator.
    """
    control = effective_control(control, policy)
    tick = min(control.sync, control.scrape)
    return tick * max(1, round(SIM_CHUNK_SECONDS / tick))


@dataclass(frozen=True)
class Schedule:
    """Arrivals over ``[0, duration)`` workload seconds, sent at ``time_scale`` × their time (single pass:
    the workload owns its random state, so ``chunks()`` is iterated once).

    ``chunks()`` yields :class:`Arrivals` whose ``times`` are already wall offsets (seconds from
    the start of the run), capped at ``max_requests`` in total.
    """

    workload: Workload
    duration: float
    time_scale: float = 1.0
    chunk: float = SIM_CHUNK_SECONDS
    max_requests: int | None = None

    @property
    def wall_duration(self) -> float:
        """Seconds of sending (the last request may leave earlier)."""
        return self.duration * self.time_scale

    def chunks(self) -> Iterator[Arrivals]:
        left = math.inf if self.max_requests is None else self.max_requests
        t = 0.0
        while t < self.duration and left > 0:
            end = min(t + self.chunk, self.duration)
            arrivals = self.workload.arrivals(t, end)
            t = end
            n = len(arrivals)
            if n == 0:
                continue
            if n > left:
                n = int(left)
            left -= n
            times = arrivals.times[:n] * self.time_scale if self.time_scale != 1.0 else arrivals.times[:n]
            yield Arrivals(times, arrivals.sizes[:n], arrivals.keys[:n])

    def expected(self) -> float:
        """Expected number of requests (the rate integrated over the run; ignores ``max_requests``)."""
        grid = np.linspace(0.0, self.duration, max(2, int(self.duration) + 1))
        rates = self.workload.rate(grid)
        return float(np.trapezoid(rates, grid)) if hasattr(np, "trapezoid") else float(np.trapz(rates, grid))


def build_schedule(workload_spec, *, seed: int, duration: float | None, time_scale: float = 1.0,
                   chunk: float = SIM_CHUNK_SECONDS, max_requests: int | None = None) -> Schedule:
    """The schedule of a workload block; ``duration`` defaults to a trace's length.

    ``seed`` is the scenario seed: the workload gets the stream the simulator gives it.
    """
    workload = build_workload(workload_spec, workload_seed(seed))
    span = duration if duration is not None else workload.duration
    if span is None:
        raise TidalInputError("duration", "required for a synthetic workload (e.g. --duration 60s)")
    return Schedule(workload, float(span), time_scale, chunk, max_requests)
