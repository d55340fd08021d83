"""Replica lifecycle in the simulator: create → cold start → warm-up → ready → drain → stop.

This is the control-plane side of the replicas (Python, touched only on scale events and once per
tick); the data plane sees the same replicas through :class:`tidal.sim.state.DataPlaneState`.
Like a Kubernetes Deployment, the pool keeps ``spec`` replicas that are not draining: a crashed
replica is replaced at once (with a fresh cold start); scaling in cancels replicas that are still
starting before it drains ready ones, newest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tidal.config.scenario import ServiceSpec
from tidal.sim.distributions import sample
from tidal.sim.state import DataPlaneState


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    time: float
    before: int
    after: int


class ReplicaPool:
    """Tracks every replica's timeline and keeps the data plane's view of it in sync."""

    def __init__(self, state: DataPlaneState, service: ServiceSpec, rng: np.random.Generator) -> None:
        self.state = state
        self.service = service
        self.rng = rng
        cap = state.capacity
        self.alive = np.zeros(cap, dtype=bool)
        self.created_at = np.zeros(cap)
        self.ready_at = np.zeros(cap)
        self.drain_at = np.full(cap, math.inf)
        self.stop_at = np.full(cap, math.inf)
        self.spec = 0
        self._next_uid = 0
        self.crashes = 0
        self.events: list[ScaleEvent] = []

    # ------------------------------------------------------------------ slots
    def _grow(self, needed: int) -> None:
        old = len(self.alive)
        self.state.ensure_capacity(needed)
        new = self.state.capacity
        if new == old:
            return
        self.alive = np.concatenate([self.alive, np.zeros(new - old, dtype=bool)])
        self.created_at = np.concatenate([self.created_at, np.zeros(new - old)])
        self.ready_at = np.concatenate([self.ready_at, np.zeros(new - old)])
        self.drain_at = np.concatenate([self.drain_at, np.full(new - old, math.inf)])
        self.stop_at = np.concatenate([self.stop_at, np.full(new - old, math.inf)])

    def _free_slot(self) -> int:
        free = np.flatnonzero(~self.alive)
        if len(free) == 0:
            self._grow(len(self.alive) + 1)
            free = np.flatnonzero(~self.alive)
        return int(free[0])

    # ------------------------------------------------------------------ actions
    def create(self, t: float, count: int = 1, *, cold: bool = True) -> None:
        """Start ``count`` replicas at ``t``; with ``cold=False`` they are ready at once."""
        if count <= 0:
            return
        cold_starts = sample(self.service.cold_start, self.rng, count) if cold else np.zeros(count)
        warmup = self.service.warmup.duration if cold else 0.0
        mtbf = self.service.mtbf
        lifetimes = self.rng.exponential(mtbf, size=count) if mtbf else np.full(count, math.inf)
        for k in range(count):
            r = self._free_slot()
            ready = t + float(cold_starts[k])
            self.alive[r] = True
            self.created_at[r] = t
            self.ready_at[r] = ready
            self.drain_at[r] = math.inf
            self.stop_at[r] = math.inf
            self.state.reset_slot(r, uid=self._next_uid, ready_at=ready, warm_until=ready + warmup,
                                  crash_at=ready + float(lifetimes[k]))
            self._next_uid += 1

    def scale_to(self, t: float, desired: int) -> None:
        """Actuate a new spec at time ``t``."""
        if desired == self.spec:
            return
        self.events.append(ScaleEvent(t, self.spec, desired))
        active = self.active_slots()
        if desired > len(active):
            self.create(t, desired - len(active))
        elif desired < len(active):
            self._remove(t, active, len(active) - desired)
        self.spec = desired

    def _remove(self, t: float, active: np.ndarray, count: int) -> None:
        ready = self.ready_at[active] <= t
        # Not-ready first (latest to become ready first), then ready ones newest first.
        order = np.lexsort((-self.ready_at[active], -self.created_at[active], ready))
        for r in active[order[:count]]:
            self.drain_at[r] = t
            self.state.acc_until[r] = min(self.state.acc_until[r], t)
            if self.ready_at[r] > t:  # still starting: cancelled, never served
                self.state.acc_from[r] = math.inf

    # ------------------------------------------------------------------ per tick
    def active_slots(self) -> np.ndarray:
        """Slots of replicas that count towards the spec (alive, not draining)."""
        return np.flatnonzero(self.alive & np.isinf(self.drain_at))

    def candidates(self) -> np.ndarray:
        return np.flatnonzero(self.alive).astype(np.int64)

    def counts(self, t: float) -> tuple[int, int, int]:
        """(ready, starting, draining) at time ``t``."""
        active = self.active_slots()
        ready = int((self.ready_at[active] <= t).sum())
        draining = int((self.alive & ~np.isinf(self.drain_at)).sum())
        return ready, len(active) - ready, draining

    def billed_seconds(self, t0: float, t1: float, cand: np.ndarray) -> float:
        """Replica-seconds billed in ``[t0, t1)``: from creation until the replica stops."""
        start = np.maximum(self.created_at[cand], t0)
        end = np.minimum(self.stop_at[cand], t1)
        return float(np.clip(end - start, 0.0, None).sum())

    def serving_seconds(self, t0: float, t1: float, cand: np.ndarray) -> float:
        """Seconds in ``[t0, t1)`` during which each replica was ready (until it stopped)."""
        start = np.maximum(self.ready_at[cand], t0)
        end = np.minimum(np.minimum(self.stop_at[cand], self.state.crash_at[cand]), t1)
        return float(np.clip(end - start, 0.0, None).sum())

    def settle(self, t0: float, t1: float, cand: np.ndarray) -> tuple[float, float]:
        """Close a tick: stop drained and crashed replicas and replace crashed ones.

        Returns (billed replica-seconds, serving replica-seconds) of ``[t0, t1)``, computed
        before stopped slots are reused.
        """
        st = self.state
        crashed: list[int] = []
        stopped: list[int] = []
        for r in cand:
            crash = st.crash_at[r]
            if crash <= t1 and crash < self.drain_at[r]:
                self.stop_at[r] = crash
                crashed.append(int(r))
            elif self.drain_at[r] <= t1 and st.idle(r):
                if self.ready_at[r] > self.drain_at[r]:
                    self.stop_at[r] = self.drain_at[r]
                else:
                    self.stop_at[r] = max(self.drain_at[r], min(st.last_end[r], t1))
                stopped.append(int(r))
        billed = self.billed_seconds(t0, t1, cand)
        serving = self.serving_seconds(t0, t1, cand)
        for r in stopped + crashed:
            self._pending_free(r)
        for r in crashed:
            self.crashes += 1
            crash = float(self.stop_at[r])
            self.create(crash, 1)  # the Deployment replaces it
            billed += t1 - crash
        return billed, serving

    def _pending_free(self, r: int) -> None:
        self.alive[r] = False
        self.state.acc_from[r] = math.inf
        self.state.acc_until[r] = -math.inf
        self.state.crash_at[r] = math.inf
