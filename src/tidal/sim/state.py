"""Preallocated arrays of the compiled data plane, and the one call that serves a tick."""

from __future__ import annotations

import math

import numpy as np

from tidal.sim import dataplane as dp
from tidal.sim.histogram import N_BUCKETS

BALANCER_CODES = {
    "round_robin": dp.RR,
    "weighted_round_robin": dp.WRR,
    "random": dp.RANDOM,
    "least_connections": dp.LEAST,
    "power_of_two": dp.P2C,
    "consistent_hash": dp.HASH,
    "central_queue": dp.CENTRAL,
}

#: Scale of weighted-round-robin weights: a replica at full speed has this weight.
WRR_WEIGHT_SCALE = 10


class DataPlaneState:
    """Every array the data plane reads or writes, indexed by replica slot ``r``.

    A slot holds one replica from creation until it stops; stopped slots are reused. Arrays grow
    (doubling) when more replicas are alive at once than there are slots.
    """

    def __init__(self, *, balancer: str, slots: int, queue_limit: int, timeout: float | None,
                 buffer_limit: int, buffer_timeout: float | None, hash_vnodes: int,
                 slowdown: float, slo_latency: float, capacity: int = 16) -> None:
        self.algo = BALANCER_CODES[balancer]
        self.central = self.algo == dp.CENTRAL
        self.slots = slots
        self.queue_cap = queue_limit
        self.timeout = math.inf if timeout is None else float(timeout)
        self.buffer_timeout = self.timeout if buffer_timeout is None else float(buffer_timeout)
        self.hash_vnodes = hash_vnodes
        self.slowdown = float(slowdown)
        self.slo_latency = float(slo_latency)
        # The central queue doubles as the scale-from-zero buffer; otherwise a separate buffer.
        limit = queue_limit if self.central else buffer_limit
        self.buf = np.zeros((max(limit, 1), 2))  # rows: (arrival, service)
        self.buf_key = np.zeros(max(limit, 1), dtype=np.int64)
        if limit == 0:
            self.buf = self.buf[:0]
        self.sched = np.zeros(dp.N_SCHED, dtype=np.int64)
        # Rows: latency this tick, latency over the run, queueing wait over the run.
        self.hist = np.zeros((3, N_BUCKETS), dtype=np.int64)
        self.counters = np.zeros(dp.N_COUNTERS, dtype=np.int64)
        self.capacity = 0
        self._allocate(capacity)

    @property
    def hist_tick(self) -> np.ndarray:
        return self.hist[0]

    @property
    def hist_total(self) -> np.ndarray:
        return self.hist[1]

    @property
    def hist_wait(self) -> np.ndarray:
        return self.hist[2]

    # ------------------------------------------------------------------ allocation
    def _allocate(self, capacity: int) -> None:
        old = self.capacity
        heap_cap = 1 if self.central else self.slots + self.queue_cap

        def grow(name: str, shape: tuple[int, ...], dtype=np.float64, fill=0.0) -> None:
            new = np.full(shape, fill, dtype=dtype)
            if old:
                new[:old] = getattr(self, name)
            setattr(self, name, new)

        grow("uid", (capacity,), np.int64, -1)
        grow("weight", (capacity,), np.int64, WRR_WEIGHT_SCALE)
        grow("rep", (capacity, dp.N_FIELDS))
        if not old:
            self.rep[:, dp.F_FROM] = math.inf
            self.rep[:, dp.F_UNTIL] = -math.inf
            self.rep[:, dp.F_CRASH] = math.inf
            self.rep[:, dp.F_WARM] = -math.inf
        else:
            self.rep[old:, dp.F_FROM] = math.inf
            self.rep[old:, dp.F_UNTIL] = -math.inf
            self.rep[old:, dp.F_CRASH] = math.inf
            self.rep[old:, dp.F_WARM] = -math.inf
        if self.central:
            grow("slot", (capacity, self.slots, 3))
            grow("slot_busy", (capacity, self.slots), np.bool_, False)
        else:
            grow("slot_free", (capacity, self.slots))
            grow("heap", (capacity, heap_cap, 3))
            grow("h_n", (capacity,), np.int64, 0)
        self.ring_pts = np.zeros(capacity * self.hash_vnodes, dtype=np.uint64)
        self.ring_owner = np.zeros(capacity * self.hash_vnodes, dtype=np.int64)
        self.wrr_sched = np.zeros(capacity * WRR_WEIGHT_SCALE, dtype=np.int64)
        self.sched[dp.S_RING_SIG] = -1  # rings are rebuilt into the new arrays
        self.sched[dp.S_WRR_SIG] = -1
        n_heap = capacity * self.slots if self.central else 1
        self.hk = np.zeros(n_heap)
        self.hr = np.zeros((n_heap, 2), dtype=np.int64)
        self.capacity = capacity
        # Column views used by the control plane (they write through to ``rep``).
        self.acc_from = self.rep[:, dp.F_FROM]
        self.acc_until = self.rep[:, dp.F_UNTIL]
        self.crash_at = self.rep[:, dp.F_CRASH]
        self.warm_until = self.rep[:, dp.F_WARM]
        self.last_end = self.rep[:, dp.F_LAST]
        self.busy = self.rep[:, dp.F_BUSY]
        self.insys = self.rep[:, dp.F_INSYS]

    def ensure_capacity(self, needed: int) -> None:
        if needed > self.capacity:
            self._allocate(max(needed, 2 * self.capacity))

    def reset_slot(self, r: int, *, uid: int, ready_at: float, warm_until: float, crash_at: float) -> None:
        """Prepare slot ``r`` for a new replica."""
        self.uid[r] = uid
        self.rep[r] = 0.0
        self.rep[r, dp.F_FROM] = ready_at
        self.rep[r, dp.F_UNTIL] = crash_at
        self.rep[r, dp.F_CRASH] = crash_at
        self.rep[r, dp.F_WARM] = warm_until
        self.weight[r] = max(1, round(WRR_WEIGHT_SCALE / self.slowdown)) if warm_until > ready_at else WRR_WEIGHT_SCALE
        if self.central:
            self.slot[r] = 0.0
            self.slot_busy[r] = False
        else:
            self.slot_free[r] = 0.0
            self.h_n[r] = 0

    # ------------------------------------------------------------------ queries
    def in_flight(self, r: np.ndarray) -> np.ndarray:
        """Requests held by each replica in ``r`` (queued + running)."""
        if self.central:
            return self.slot_busy[r].sum(axis=1)
        return self.h_n[r]

    def running(self, r: np.ndarray, t: float) -> np.ndarray:
        if self.central:
            return self.slot_busy[r].sum(axis=1)
        return (self.slot_free[r] > t).sum(axis=1)

    def buffered(self) -> int:
        return int(self.sched[dp.S_BUF_COUNT])

    def idle(self, r: int) -> bool:
        return not self.slot_busy[r].any() if self.central else self.h_n[r] == 0

    # ------------------------------------------------------------------ the tick
    def serve(self, t0: float, t1: float, cand: np.ndarray, times: np.ndarray, service: np.ndarray,
              keys: np.ndarray) -> None:
        """Run the compiled data plane over ``[t0, t1)`` for the candidate replica slots."""
        self.counters[:] = 0
        self.hist[0] = 0
        self.rep[:, dp.F_BUSY] = 0.0
        self.rep[:, dp.F_INSYS] = 0.0
        if self.central:
            dp.run_tick_central(
                t0, t1, times, service, cand, self.rep, self.slot, self.slot_busy, self.slots, self.timeout,
                self.slowdown, self.sched, self.buf, self.hk, self.hr, self.hist, self.counters,
                self.slo_latency,
            )
        else:
            if self.algo == dp.WRR and len(cand):
                # A replica gets its full weight back once its warm-up has ended (from the tick
                # after, like every change of the routable set); the WRR order is rebuilt then.
                warmed = cand[(self.weight[cand] != WRR_WEIGHT_SCALE) & (self.rep[cand, dp.F_WARM] <= t0)]
                self.weight[warmed] = WRR_WEIGHT_SCALE
            dp.run_tick(
                t0, t1, times, service, keys, self.algo, cand, self.uid, self.weight, self.rep, self.slot_free,
                self.heap, self.h_n, self.slots, self.queue_cap, self.timeout, self.slowdown, self.sched,
                self.buf, self.buf_key, self.buffer_timeout, self.hash_vnodes, self.ring_pts, self.ring_owner,
                self.wrr_sched, self.hist, self.counters, self.slo_latency,
            )
