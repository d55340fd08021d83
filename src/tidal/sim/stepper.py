"""Step a simulation one sync period at a time, with the caller deciding (RL, what-if tools).

:meth:`Simulation.run` owns its loop: it asks its policy at every sync point. A
:class:`SimulationStepper` turns that loop inside out. The caller reads :meth:`~SimulationStepper.observe`
at a sync point, picks a replica count by any means, and :meth:`~SimulationStepper.step` advances
the simulation by one sync period and returns what happened tick by tick::

    stepper = SimulationStepper(scenario, seed=1)
    obs = stepper.reset()
    while not stepper.done:
        ticks = stepper.step(my_choice(obs))
        obs = stepper.observe()
    result = stepper.result()

Each tick is exactly the one ``run()`` would simulate — both call :meth:`Simulation.advance` — so
driving it with ``policy.decide(stepper.observe()).replicas`` reproduces
``Simulation(scenario, policy).run()`` bit for bit (the tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass

from tidal.config.scenario import Scenario
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.sim.results import SimulationResult
from tidal.sim.simulator import Simulation
from tidal.workload import Workload


@dataclass(frozen=True, slots=True)
class TickSummary:
    """One simulated tick, as a row of the result's tick table (``cost`` in money)."""

    time: float
    duration: float
    desired: int
    spec: int
    ready: int
    starting: int
    draining: int
    arrivals: int
    completions: int
    drops: int
    slo_ok: int
    in_flight: int
    utilization: float
    replica_seconds: float
    cost: float
    latency_p50: float
    latency_p95: float
    latency_p99: float

    @property
    def slo_misses(self) -> int:
        """Requests that finished in this tick outside the SLO, drops included."""
        return self.completions - self.slo_ok + self.drops


class _External(Policy):
    """Placeholder policy of a stepped simulation: the stepper's caller decides."""

    # No registry name: the stepped run takes the cadence of the scenario's policy block.
    name = ""

    def __init__(self, label: str) -> None:
        self.label = label

    def decide(self, obs: Observation) -> Decision:
        raise RuntimeError("a stepped simulation has no policy: pass the decision to SimulationStepper.step()")

    def describe(self) -> str:
        return self.label


class SimulationStepper:
    """One scenario, advanced one sync period per :meth:`step` by a caller that decides.

    ``seed`` defaults to the scenario's; :meth:`reset` may change it between episodes. A
    ``workload`` object (instead of the scenario's workload block) is consumed as it is read, so a
    stepper built with one can run a single episode. ``label`` names the decision maker in the
    :meth:`result` summary.
    """

    def __init__(self, scenario: Scenario, *, seed: int | None = None, workload: Workload | None = None,
                 label: str = "external") -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.label = label
        self._workload = workload
        self._workload_used = False
        self.sim: Simulation | None = None
        self._k = 0  # index of the next tick

    # ------------------------------------------------------------------ episode
    def reset(self, seed: int | None = None) -> Observation:
        """Start a fresh episode (same seed ⇒ same requests) and return the first observation."""
        if seed is not None:
            self.seed = seed
        if self._workload is not None:
            if self._workload_used:
                raise RuntimeError("a stepper built with an explicit workload runs one episode only")
            self._workload_used = True
        sim = Simulation(self.scenario, _External(self.label), seed=self.seed, workload=self._workload)
        sim.start()
        self.sim = sim
        self._k = 0
        return self.observe()

    @property
    def tick(self) -> float:
        return self._sim.tick

    @property
    def sync_period(self) -> float:
        """Simulated seconds one :meth:`step` covers (the last step may be shorter)."""
        return self._sim.tick * self._sim.per_sync

    @property
    def time(self) -> float:
        """Simulated time of the next decision."""
        return self._k * self._sim.tick

    @property
    def duration(self) -> float:
        return self._sim.duration

    @property
    def done(self) -> bool:
        """True once the scenario's whole duration has been simulated."""
        return self._k >= self._sim.n_ticks

    @property
    def spec(self) -> int:
        """The replica count last decided (what ``Observation.replicas`` reports)."""
        return int(self._sim._spec)

    def observe(self) -> Observation:
        """What a policy would see now: metrics delayed by the scenario's ``metrics_lag``."""
        sim = self._sim
        return sim._observe(self._k * sim.tick, sim.scenario.control.metrics_lag)

    # ------------------------------------------------------------------ step
    def step(self, desired: int) -> tuple[TickSummary, ...]:
        """Decide ``desired`` replicas now and simulate one sync period; return its ticks.

        The count is used as given (clamp it to the scenario's bounds first if you mean to honour
        them, as ``Bounded`` does in :meth:`Simulation.run`). Actuation follows after the
        scenario's ``actuation_delay``.
        """
        if self.done:
            raise RuntimeError("the episode is over: call reset()")
        desired = int(desired)
        if desired < 0:
            raise ValueError(f"desired replicas must be >= 0, got {desired}")
        sim = self._sim
        first = self._k
        last = min(first + sim.per_sync, sim.n_ticks)
        for k in range(first, last):
            sim.advance(k, desired if k == first else None)
        self._k = last
        return tuple(self._summary(k) for k in range(first, last))

    def _summary(self, k: int) -> TickSummary:
        sim = self._sim
        tb = sim.table
        t0 = float(tb.time[k])
        replica_seconds = float(tb.replica_seconds[k])
        return TickSummary(
            time=t0,
            duration=min(t0 + sim.tick, sim.duration) - t0,
            desired=int(tb.desired[k]),
            spec=int(tb.spec[k]),
            ready=int(tb.ready[k]),
            starting=int(tb.starting[k]),
            draining=int(tb.draining[k]),
            arrivals=int(tb.arrivals[k]),
            completions=int(tb.completions[k]),
            drops=int(tb.drops[k]),
            slo_ok=int(tb.slo_ok[k]),
            in_flight=int(tb.in_flight[k]),
            utilization=float(tb.utilization[k]),
            replica_seconds=replica_seconds,
            cost=replica_seconds / 3600.0 * self.scenario.cost.replica_hour,
            latency_p50=float(tb.latency_p50[k]),
            latency_p95=float(tb.latency_p95[k]),
            latency_p99=float(tb.latency_p99[k]),
        )

    # ------------------------------------------------------------------ results
    def result(self) -> SimulationResult:
        """The run so far as a :class:`SimulationResult` (the whole run once :attr:`done`)."""
        if self._k == 0:
            raise RuntimeError("nothing simulated yet: call step() first")
        return self._sim.result()

    @property
    def _sim(self) -> Simulation:
        if self.sim is None:
            raise RuntimeError("call reset() before stepping the simulation")
        return self.sim

