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
        ring = max(queue_limit if self.central else buffer_limit, 1)
        self.buf_arr = np.zeros(ring)
        self.buf_svc = np.zeros(ring)
        self.buf_key = np.zeros(ring, dtype=np.int64)
        self.buffer_enabled = (queue_limit if self.central else buffer_limit) > 0
        self.sched = np.zeros(dp.N_SCHED, dtype=np.int64)
        self.sched[dp.S_RING_SIG] = -1
        self.sched[dp.S_WRR_SIG] = -1
        self.hist_tick = np.zeros(N_BUCKETS, dtype=np.int64)
        self.hist_total = np.zeros(N_BUCKETS, dtype=np.int64)
        self.counters = np.zeros(dp.N_COUNTERS, dtype=np.int64)
        self.capacity = 0
        self._allocate(capacity)

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
        grow("acc_from", (capacity,), fill=math.inf)
        grow("acc_until", (capacity,), fill=-math.inf)
        grow("crash_at", (capacity,), fill=math.inf)
        grow("warm_until", (capacity,), fill=-math.inf)
        grow("weight", (capacity,), np.int64, WRR_WEIGHT_SCALE)
        grow("last_end", (capacity,))
        grow("slot_free", (capacity, self.slots))
        grow("slot_start", (capacity, self.slots) if self.central else (1, 1))
        grow("slot_arr", (capacity, self.slots) if self.central else (1, 1))
        grow("slot_busy", (capacity, self.slots) if self.central else (1, 1), np.bool_, False)
        grow("h_end", (capacity, heap_cap))
        grow("h_start", (capacity, heap_cap))
        grow("h_arr", (capacity, heap_cap))
        grow("h_n", (capacity,), np.int64, 0)
        grow("busy", (capacity,))
        grow("insys", (capacity,))
        self.ring_pts = np.zeros(capacity * self.hash_vnodes, dtype=np.uint64)
        self.ring_owner = np.zeros(capacity * self.hash_vnodes, dtype=np.int64)
        self.wrr_sched = np.zeros(capacity * WRR_WEIGHT_SCALE, dtype=np.int64)
        self.sched[dp.S_RING_SIG] = -1  # rings are rebuilt into the new arrays
        self.sched[dp.S_WRR_SIG] = -1
        n_heap = capacity * self.slots if self.central else 1
        self.hk = np.zeros(n_heap)
        self.hr = np.zeros(n_heap, dtype=np.int64)
        self.hj = np.zeros(n_heap, dtype=np.int64)
        self.capacity = capacity

    def ensure_capacity(self, needed: int) -> None:
        if needed > self.capacity:
            self._allocate(max(needed, 2 * self.capacity))

    def reset_slot(self, r: int, *, uid: int, ready_at: float, warm_until: float, crash_at: float) -> None:
        """Prepare slot ``r`` for a new replica."""
        self.uid[r] = uid
        self.acc_from[r] = ready_at
        self.acc_until[r] = crash_at
        self.crash_at[r] = crash_at
        self.warm_until[r] = warm_until
        self.weight[r] = max(1, round(WRR_WEIGHT_SCALE / self.slowdown)) if warm_until > ready_at else WRR_WEIGHT_SCALE
        self.last_end[r] = 0.0
        self.slot_free[r] = 0.0
        self.h_n[r] = 0
        if self.central:
            self.slot_busy[r] = False

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
        return bool(self.slot_busy[r].sum() == 0) if self.central else self.h_n[r] == 0

    # ------------------------------------------------------------------ the tick
    def serve(self, t0: float, t1: float, cand: np.ndarray, times: np.ndarray, service: np.ndarray,
              keys: np.ndarray) -> None:
        """Run the compiled data plane over ``[t0, t1)`` for the candidate replica slots."""
        self.counters[:] = 0
        self.hist_tick[:] = 0
        self.busy[:] = 0.0
        self.insys[:] = 0.0
        buf = self.buf_arr if self.buffer_enabled else self.buf_arr[:0]
        if self.central:
            dp.run_tick_central(
                t0, t1, times, service, self.acc_from, self.acc_until, self.crash_at, self.warm_until,
                self.slowdown, cand, self.slot_free, self.slot_start, self.slot_arr, self.slot_busy,
                self.last_end, self.slots, self.timeout, self.sched, buf, self.buf_svc,
                self.hk, self.hr, self.hj, self.hist_tick, self.hist_total, self.counters,
                self.slo_latency, self.busy, self.insys,
            )
            return
        dp.run_tick(
            t0, t1, times, service, keys, self.algo, cand, self.uid, self.acc_from, self.acc_until,
            self.crash_at, self.warm_until, self.slowdown, self.weight, self.slot_free, self.h_end,
            self.h_start, self.h_arr, self.h_n, self.last_end, self.slots, self.queue_cap, self.timeout,
            self.sched, buf, self.buf_svc, self.buf_key, self.buffer_timeout, self.hash_vnodes,
            self.ring_pts, self.ring_owner, self.wrr_sched, self.hist_tick, self.hist_total,
            self.counters, self.slo_latency, self.busy, self.insys,
        )
