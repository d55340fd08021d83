"""The compiled data plane: route, queue and serve one tick of requests (numba, no Python objects).

Per-replica mode (every balancer but ``central_queue``): a request routed to replica ``r`` at time
``t`` waits in ``r``'s FCFS queue for the earliest of its ``concurrency`` slots. Because FCFS never
lets a later arrival overtake, its start time is known at routing time (Kiefer–Wolfowitz
recursion: ``start = max(t, earliest slot free)``), so each request is handled once, in O(slots +
log in-flight). The replica keeps a min-heap of its requests' end times; popping the heap lazily
up to ``t`` gives its exact in-flight count at ``t``, which is what least-connections and
power-of-two-choices compare. Completions, timeouts and crash losses are recorded when popped, so
every figure lands in the tick in which it happened.

Central-queue mode (``central_queue``, the activator / M/M/c model): one shared FCFS queue feeds
the slots of all ready replicas; a heap of slot free times gives the next slot in O(log slots).

Time-varying membership (a replica becoming ready, starting to drain, crashing, finishing warm-up)
splits a tick into segments; within a segment the set of routable replicas is fixed. Requests
arriving while no replica is routable wait in a bounded buffer and are dispatched when one is
(scale from zero).

All state lives in preallocated arrays owned by :class:`tidal.sim.state.DataPlaneState`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tidal.sim.histogram import LATENCY_MIN, MIN_EXPONENT, N_BUCKETS, SUB_BUCKETS

# Balancer codes (tidal.sim.state.BALANCER_CODES maps names to these).
RR, WRR, RANDOM, LEAST, P2C, HASH, CENTRAL = 0, 1, 2, 3, 4, 5, 6

# Indices into the per-tick counter vector.
C_ARRIVALS, C_COMPLETED, C_QUEUE_FULL, C_TIMEOUT, C_BUFFER_FULL, C_CRASH, C_SLO_OK = range(7)
N_COUNTERS = 7

# Indices into the integer scheduler state vector.
S_RR, S_BUF_HEAD, S_BUF_COUNT, S_RING_SIG, S_RING_LEN, S_WRR_SIG, S_WRR_LEN, S_RNG = range(8)
N_SCHED = 8

# Columns of the per-replica float table ``rep``: routable from / until, crash time, end of
# warm-up, latest end time of any request it took, and this tick's busy and in-system integrals.
F_FROM, F_UNTIL, F_CRASH, F_WARM, F_LAST, F_BUSY, F_INSYS = range(7)
N_FIELDS = 7

# Fields of one in-flight entry in a replica's heap (entry-major, so a swap moves 24 bytes).
E_END, E_START, E_ARR = 0, 1, 2

# The hot helpers take few, consolidated arrays on purpose: every array argument of a compiled
# call costs reference-count traffic, and measurement showed that to be most of the time per
# request when the state was spread over twenty separate arrays.

INF = math.inf


def seed_state(seed: int) -> int:
    """Initial state of the routing random stream (any non-zero 64-bit value works)."""
    x = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & (2**64 - 1)
    x = x or 1
    return x - 2**64 if x >= 2**63 else x  # stored in an int64 slot


@njit(cache=True, inline="always")
def _next_uniform(x, m):
    """One step of the routing stream: (new state, uniform integer in [0, m)).

    An xorshift64* generator, hand-rolled rather than numba's np.random: it is a few
    instructions, its state travels with the simulation (``sched_state[S_RNG]``, no
    process-global generator), and the routing loop keeps that state in a local. Lemire's
    multiply-shift maps 32 random bits to [0, m) without division.
    """
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    bits = (x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)
    return x, np.int64((bits * np.uint64(m)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _overlap(a: float, b: float, t0: float, t1: float) -> float:
    lo = a if a > t0 else t0
    hi = b if b < t1 else t1
    return hi - lo if hi > lo else 0.0


# Bucket index straight from an IEEE-754 double: frexp's exponent is the biased exponent - 1022,
# and the sub-bucket is the top log2(SUB_BUCKETS) bits of the 52-bit fraction.
_EXP_BIAS = 1022 + MIN_EXPONENT
_SUB_BITS = SUB_BUCKETS.bit_length() - 1
assert 1 << _SUB_BITS == SUB_BUCKETS, "SUB_BUCKETS must be a power of two"


@njit(cache=True, inline="always")
def _bucket(latency: float) -> int:
    """Histogram bucket of a latency, the same as :func:`tidal.sim.histogram.bucket_of`.

    Reads the exponent and leading fraction bits of the float instead of calling ``math.frexp``
    (same result for every input at or above ``LATENCY_MIN``).
    """
    if latency < LATENCY_MIN:
        return 0
    bits = np.int64(np.float64(latency).view(np.int64))
    b = (((bits >> 52) & 0x7FF) - _EXP_BIAS) * SUB_BUCKETS + ((bits >> (52 - _SUB_BITS)) & (SUB_BUCKETS - 1)) + 1
    return b if b < N_BUCKETS else N_BUCKETS - 1


@njit(cache=True, inline="always")
def _record_latency(latency, wait, hist, counters, slo_latency):
    """Count a completion: latency into this tick's and the run's histograms, wait into the run's."""
    b = _bucket(latency)
    hist[0, b] += 1
    hist[1, b] += 1
    hist[2, _bucket(wait)] += 1
    counters[C_COMPLETED] += 1
    if latency <= slo_latency:
        counters[C_SLO_OK] += 1


@njit(cache=True, inline="always")
def _splitmix64(x: np.uint64) -> np.uint64:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


# --------------------------------------------------------------------------- per-replica heaps
#
# Why the per-request code below is written out by hand instead of calling small helpers with
# ``inline="always"``: numba inlines such a helper by binding each array argument to a new
# variable, and every binding is an ``NRT_incref`` / ``NRT_decref`` call pair (an atomic
# reference count update through a function pointer) that LLVM's reference-count pruning cannot
# remove inside the loop. With a dozen array arguments per request that bookkeeping was about two
# thirds of the data plane's time (routing alone: 89 ns per request through the helpers, 6 ns
# written out). Plain (non-inlined) compiled calls borrow their arguments, so the rare paths still
# use functions.


@njit(cache=True)
def _retire(r, t, t0, t1, heap, h_n, rep, hist, counters, slo_latency):
    """Retire replica ``r``'s requests that ended by ``t``; apply its crash if ``t`` passed it.

    Used at the end of a tick and for crashes; ``_serve_requests`` has the same pop loop written
    out for the per-request path. A completion goes into this tick's and the run's latency
    histograms (``hist[0]``, ``hist[1]``) and its queueing wait into ``hist[2]``; a request that
    timed out while waiting (negative start) is a drop.
    """
    crash = rep[r, F_CRASH]
    limit = t if t < crash else crash
    n = h_n[r]
    while n > 0 and heap[r, 0, E_END] <= limit:
        end = heap[r, 0, E_END]
        start = heap[r, 0, E_START]
        arrival = heap[r, 0, E_ARR]
        # Pop the root: sift the last entry down from the top.
        n -= 1
        if n > 0:
            last_end = heap[r, n, E_END]
            last_start = heap[r, n, E_START]
            last_arr = heap[r, n, E_ARR]
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and heap[r, child + 1, E_END] < heap[r, child, E_END]:
                    child += 1
                if heap[r, child, E_END] >= last_end:
                    break
                heap[r, i, E_END] = heap[r, child, E_END]
                heap[r, i, E_START] = heap[r, child, E_START]
                heap[r, i, E_ARR] = heap[r, child, E_ARR]
                i = child
            heap[r, i, E_END] = last_end
            heap[r, i, E_START] = last_start
            heap[r, i, E_ARR] = last_arr
        rep[r, F_INSYS] += _overlap(arrival, end, t0, t1)
        if start < 0.0:  # timed out while waiting: dropped at ``end``
            counters[C_TIMEOUT] += 1
        else:
            rep[r, F_BUSY] += _overlap(start, end, t0, t1)
            _record_latency(end - arrival, start - arrival, hist, counters, slo_latency)
    h_n[r] = n
    if t >= crash and n > 0:
        for i in range(n):
            rep[r, F_INSYS] += _overlap(heap[r, i, E_ARR], crash, t0, t1)
            if heap[r, i, E_START] >= 0.0:
                rep[r, F_BUSY] += _overlap(heap[r, i, E_START], crash, t0, t1)
        counters[C_CRASH] += n
        h_n[r] = 0


@njit(cache=True)
def _serve_requests(times, service, keys, i, n, s1, t_floor, t0, t1, algo, elig, sched_state, ring_pts, ring_owner,
                    wrr_sched, slot_free, heap, h_n, rep, hist, counters, slots, queue_cap, timeout, slowdown,
                    slo_latency):
    """Route, queue and serve requests ``i, i+1, ...`` (below ``n``) that arrive before ``s1``.

    A request arriving at ``times[k]`` is routed at ``max(times[k], t_floor)`` (``t_floor`` is the
    dispatch time of buffered requests). Each candidate replica's in-flight heap is brought up to
    that time before the balancer compares them. Returns the index of the first request left.
    """
    m = len(elig)
    # The routing stream's state stays in a register for the whole call (written back at the end):
    # kept in ``sched_state`` it was a store-to-load round trip per draw.
    rng = np.uint64(sched_state[S_RNG])
    while i < n and times[i] < s1:
        arrival = times[i]
        t = arrival if arrival > t_floor else t_floor
        # --- candidates: LEAST compares every routable replica, P2C two distinct ones, the rest one.
        a = elig[0]
        b = a
        n_cand = 1
        if algo == LEAST:
            n_cand = m
        elif m > 1:
            if algo == P2C:
                rng, x = _next_uniform(rng, m)
                rng, y = _next_uniform(rng, m - 1)
                if y >= x:
                    y += 1
                a = elig[x]
                b = elig[y]
                n_cand = 2
            elif algo == RR:
                a = elig[sched_state[S_RR] % m]
                sched_state[S_RR] += 1
            elif algo == RANDOM:
                rng, x = _next_uniform(rng, m)
                a = elig[x]
            elif algo == HASH:
                a = _ring_lookup(keys[i], ring_pts, ring_owner, sched_state[S_RING_LEN])
            else:  # WRR
                a = wrr_sched[sched_state[S_RR] % sched_state[S_WRR_LEN]]
                sched_state[S_RR] += 1
        # --- bring each candidate's heap up to t; keep the one with the fewest in flight (first wins ties).
        best = -1
        for k in range(n_cand):
            r = elig[k] if algo == LEAST else (a if k == 0 else b)
            if t >= rep[r, F_CRASH]:  # never while r is routable (a crash ends its segment); kept for safety
                _retire(r, t, t0, t1, heap, h_n, rep, hist, counters, slo_latency)
            # ``_retire``'s pop loop (and ``_record_latency``) for a time before the crash, written
            # out: as a call it cost ~20 ns per request, and ``_record_latency`` inlined here
            # 2-8 ns (its array arguments' reference counts); keep them in step.
            nh = h_n[r]
            while nh > 0 and heap[r, 0, E_END] <= t:
                end = heap[r, 0, E_END]
                start = heap[r, 0, E_START]
                arr0 = heap[r, 0, E_ARR]
                nh -= 1
                if nh > 0:
                    last_end = heap[r, nh, E_END]
                    last_start = heap[r, nh, E_START]
                    last_arr = heap[r, nh, E_ARR]
                    p = 0
                    while True:
                        child = 2 * p + 1
                        if child >= nh:
                            break
                        if child + 1 < nh and heap[r, child + 1, E_END] < heap[r, child, E_END]:
                            child += 1
                        if heap[r, child, E_END] >= last_end:
                            break
                        heap[r, p, E_END] = heap[r, child, E_END]
                        heap[r, p, E_START] = heap[r, child, E_START]
                        heap[r, p, E_ARR] = heap[r, child, E_ARR]
                        p = child
                    heap[r, p, E_END] = last_end
                    heap[r, p, E_START] = last_start
                    heap[r, p, E_ARR] = last_arr
                rep[r, F_INSYS] += _overlap(arr0, end, t0, t1)
                if start < 0.0:
                    counters[C_TIMEOUT] += 1
                else:
                    rep[r, F_BUSY] += _overlap(start, end, t0, t1)
                    latency = end - arr0
                    bk = _bucket(latency)
                    hist[0, bk] += 1
                    hist[1, bk] += 1
                    hist[2, _bucket(start - arr0)] += 1
                    counters[C_COMPLETED] += 1
                    if latency <= slo_latency:
                        counters[C_SLO_OK] += 1
            h_n[r] = nh
            if best < 0 or h_n[r] < h_n[best]:
                best = r
        r = best
        # --- queue on r: FCFS start on the earliest free slot (Kiefer-Wolfowitz), push the end.
        i += 1
        h = h_n[r]
        if h >= slots + queue_cap:
            counters[C_QUEUE_FULL] += 1
            continue
        slot = 0
        free = slot_free[r, 0]
        for j in range(1, slots):
            if slot_free[r, j] < free:
                free = slot_free[r, j]
                slot = j
        start = t if t > free else free
        if start - arrival > timeout:
            end = arrival + timeout
            if end < t:
                end = t
            start = -1.0
        else:
            span = service[i - 1]
            if start < rep[r, F_WARM]:
                span = span * slowdown
            end = start + span
            slot_free[r, slot] = end
        if end > rep[r, F_LAST]:
            rep[r, F_LAST] = end
        # Heap push: sift the new entry up from the bottom.
        h_n[r] = h + 1
        while h > 0:
            parent = (h - 1) >> 1
            if heap[r, parent, E_END] <= end:
                break
            heap[r, h, E_END] = heap[r, parent, E_END]
            heap[r, h, E_START] = heap[r, parent, E_START]
            heap[r, h, E_ARR] = heap[r, parent, E_ARR]
            h = parent
        heap[r, h, E_END] = end
        heap[r, h, E_START] = start
        heap[r, h, E_ARR] = arrival
    sched_state[S_RNG] = np.int64(rng)
    return i


# --------------------------------------------------------------------------- segments & rings


@njit(cache=True)
def _segment_bounds(t0, t1, cand, rep):
    """Sorted distinct times in (t0, t1) at which the routable set or a replica's speed changes."""
    points = np.empty(3 * len(cand) + 2)
    k = 0
    points[k] = t0
    k += 1
    for i in range(len(cand)):
        r = cand[i]
        for f in (F_FROM, F_UNTIL, F_WARM):
            x = rep[r, f]
            if t0 < x < t1:
                points[k] = x
                k += 1
    points[k] = t1
    k += 1
    pts = np.sort(points[:k])
    out = np.empty(k)
    m = 0
    for i in range(k):
        if m == 0 or pts[i] > out[m - 1]:
            out[m] = pts[i]
            m += 1
    return out[:m]


@njit(cache=True)
def _routable(s0, cand, rep):
    elig = np.empty(len(cand), dtype=np.int64)
    m = 0
    for i in range(len(cand)):
        r = cand[i]
        if rep[r, F_FROM] <= s0 < rep[r, F_UNTIL]:
            elig[m] = r
            m += 1
    return elig[:m]


@njit(cache=True)
def _signature(elig, uid, extra):
    sig = np.uint64(1469598103934665603) + np.uint64(extra)
    for i in range(len(elig)):
        sig = _splitmix64(sig ^ np.uint64(uid[elig[i]]))
    return np.int64(sig >> np.uint64(1))


@njit(cache=True)
def _weighted_signature(elig, uid, weight):
    """Like :func:`_signature`, with each replica's weight mixed in after its uid.

    Each weight goes through the mixer in turn (an XOR of shifted weights let two replicas'
    equal changes cancel, so restored weights went unnoticed and the old order stayed).
    """
    sig = np.uint64(1469598103934665603)
    for i in range(len(elig)):
        sig = _splitmix64(sig ^ np.uint64(uid[elig[i]]))
        sig = _splitmix64(sig ^ np.uint64(weight[elig[i]]))
    return np.int64(sig >> np.uint64(1))


@njit(cache=True)
def _build_ring(elig, uid, vnodes, ring_pts, ring_owner):
    n = len(elig) * vnodes
    pts = np.empty(n, dtype=np.uint64)
    owner = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(len(elig)):
        r = elig[i]
        base = np.uint64(uid[r]) * np.uint64(0x100000001B3)
        for v in range(vnodes):
            pts[k] = _splitmix64(base + np.uint64(v))
            owner[k] = r
            k += 1
    order = np.argsort(pts)
    for i in range(n):
        ring_pts[i] = pts[order[i]]
        ring_owner[i] = owner[order[i]]
    return n


@njit(cache=True)
def _ring_lookup(key, ring_pts, ring_owner, n):
    h = _splitmix64(np.uint64(key))
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if ring_pts[mid] < h:
            lo = mid + 1
        else:
            hi = mid
    if lo == n:
        lo = 0
    return ring_owner[lo]


@njit(cache=True)
def _build_wrr(elig, weight, sched):
    """Smooth weighted round robin (nginx's): a fixed interleaved order of length sum(weights)."""
    m = len(elig)
    total = 0
    for i in range(m):
        total += weight[elig[i]]
    current = np.zeros(m, dtype=np.int64)
    for k in range(total):
        best = 0
        for i in range(m):
            current[i] += weight[elig[i]]
            if current[i] > current[best]:
                best = i
        current[best] -= total
        sched[k] = elig[best]
    return total


@njit(cache=True)
def _prepare_routing(algo, elig, uid, weight, vnodes, sched_state, ring_pts, ring_owner, wrr_sched):
    """Rebuild the hash ring or WRR order when the routable set (or a weight) changed."""
    if algo == HASH:
        sig = _signature(elig, uid, vnodes)
        if sig != sched_state[S_RING_SIG]:
            sched_state[S_RING_LEN] = _build_ring(elig, uid, vnodes, ring_pts, ring_owner)
            sched_state[S_RING_SIG] = sig
    elif algo == WRR:
        sig = _weighted_signature(elig, uid, weight)
        if sig != sched_state[S_WRR_SIG]:
            sched_state[S_WRR_LEN] = _build_wrr(elig, weight, wrr_sched)
            sched_state[S_WRR_SIG] = sig


@njit(cache=True)
def _expire_buffer(now, buf, buf_timeout, sched_state, counters):
    cap = buf.shape[0]
    while sched_state[S_BUF_COUNT] > 0 and buf[sched_state[S_BUF_HEAD], 0] + buf_timeout <= now:
        counters[C_TIMEOUT] += 1
        sched_state[S_BUF_HEAD] = (sched_state[S_BUF_HEAD] + 1) % cap
        sched_state[S_BUF_COUNT] -= 1


@njit(cache=True)
def _dispatch_buffer(now, t0, t1, algo, elig, slots, queue_cap, timeout, slowdown, sched_state, buf, buf_key,
                     ring_pts, ring_owner, wrr_sched, slot_free, heap, h_n, rep, hist, counters, slo_latency):
    """Scale from zero: hand the buffered requests, in arrival order, to the replicas just routable."""
    count = sched_state[S_BUF_COUNT]
    head = sched_state[S_BUF_HEAD]
    cap = buf.shape[0]
    arrivals = np.empty(count)
    service = np.empty(count)
    keys = np.empty(count, dtype=np.int64)
    for k in range(count):
        h = (head + k) % cap
        arrivals[k] = buf[h, 0]
        service[k] = buf[h, 1]
        keys[k] = buf_key[h]
    _serve_requests(arrivals, service, keys, 0, count, INF, now, t0, t1, algo, elig, sched_state, ring_pts,
                    ring_owner, wrr_sched, slot_free, heap, h_n, rep, hist, counters, slots, queue_cap, timeout,
                    slowdown, slo_latency)
    sched_state[S_BUF_HEAD] = (head + count) % cap
    sched_state[S_BUF_COUNT] = 0


@njit(cache=True)
def run_tick(t0, t1, times, service, keys, algo, cand, uid, weight, rep, slot_free, heap, h_n, slots,
             queue_cap, timeout, slowdown, sched_state, buf, buf_key, buf_timeout, vnodes, ring_pts,
             ring_owner, wrr_sched, hist, counters, slo_latency):
    """Serve the arrivals of ``[t0, t1)`` on the per-replica-queue model.

    ``cand`` lists every replica slot that may route or hold requests during the tick. The
    counters, ``hist[0]`` and the busy / in-system columns of ``rep`` accumulate this tick's
    figures (the caller zeroes them). ``buf`` rows are (arrival, service) of buffered requests.
    """
    n = len(times)
    counters[C_ARRIVALS] += n
    bounds = _segment_bounds(t0, t1, cand, rep)
    buf_cap = buf.shape[0]
    i = 0
    for s in range(len(bounds) - 1):
        s0 = bounds[s]
        s1 = bounds[s + 1]
        elig = _routable(s0, cand, rep)
        m = len(elig)
        _expire_buffer(s0, buf, buf_timeout, sched_state, counters)
        if m > 0:
            _prepare_routing(algo, elig, uid, weight, vnodes, sched_state, ring_pts, ring_owner, wrr_sched)
            if sched_state[S_BUF_COUNT] > 0:
                _dispatch_buffer(s0, t0, t1, algo, elig, slots, queue_cap, timeout, slowdown, sched_state, buf,
                                 buf_key, ring_pts, ring_owner, wrr_sched, slot_free, heap, h_n, rep, hist,
                                 counters, slo_latency)
            i = _serve_requests(times, service, keys, i, n, s1, -INF, t0, t1, algo, elig, sched_state, ring_pts,
                                ring_owner, wrr_sched, slot_free, heap, h_n, rep, hist, counters, slots, queue_cap,
                                timeout, slowdown, slo_latency)
        else:
            while i < n and times[i] < s1:
                if sched_state[S_BUF_COUNT] < buf_cap:
                    tail = (sched_state[S_BUF_HEAD] + sched_state[S_BUF_COUNT]) % buf_cap
                    buf[tail, 0] = times[i]
                    buf[tail, 1] = service[i]
                    buf_key[tail] = keys[i]
                    sched_state[S_BUF_COUNT] += 1
                else:
                    counters[C_BUFFER_FULL] += 1
                i += 1
    # Close the tick: retire everything that ended by t1 and integrate what is still in flight.
    _expire_buffer(t1, buf, buf_timeout, sched_state, counters)
    for k in range(len(cand)):
        r = cand[k]
        _retire(r, t1, t0, t1, heap, h_n, rep, hist, counters, slo_latency)
        for q in range(h_n[r]):
            rep[r, F_INSYS] += _overlap(heap[r, q, E_ARR], t1, t0, t1)
            if heap[r, q, E_START] >= 0.0:
                rep[r, F_BUSY] += _overlap(heap[r, q, E_START], t1, t0, t1)


# --------------------------------------------------------------------------- central queue


@njit(cache=True, inline="always")
def _slot_push(hk, hr, size, key, r, j):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if hk[parent] <= key:
            break
        hk[i] = hk[parent]
        hr[i, 0] = hr[parent, 0]
        hr[i, 1] = hr[parent, 1]
        i = parent
    hk[i] = key
    hr[i, 0] = r
    hr[i, 1] = j
    return size + 1


@njit(cache=True, inline="always")
def _retire_slot(r, j, t0, t1, slot, slot_busy, rep, hist, counters, slo_latency):
    """Record the completion of the request that occupied slot (r, j) (end of a tick).

    ``run_tick_central``'s per-request path has the same code written out; keep the two in step.
    """
    if slot_busy[r, j]:
        end = slot[r, j, E_END]
        span = _overlap(slot[r, j, E_START], end, t0, t1)
        rep[r, F_BUSY] += span
        rep[r, F_INSYS] += span
        _record_latency(end - slot[r, j, E_ARR], slot[r, j, E_START] - slot[r, j, E_ARR], hist, counters, slo_latency)
        slot_busy[r, j] = False


@njit(cache=True)
def run_tick_central(t0, t1, times, service, cand, rep, slot, slot_busy, slots, timeout, slowdown,
                     sched_state, queue, hk, hr, hist, counters, slo_latency):
    """Serve the arrivals of ``[t0, t1)`` from one shared FCFS queue (M/M/c-style activator).

    ``queue`` rows are (arrival, service), a ring using ``S_BUF_HEAD``/``S_BUF_COUNT``; it also
    buffers while no replica is ready. ``slot[r, j]`` holds (end, start, arrival) of the request
    on slot ``j`` of replica ``r``; busy / in-system integrals count running requests.
    """
    n = len(times)
    counters[C_ARRIVALS] += n
    q_cap = queue.shape[0]
    bounds = _segment_bounds(t0, t1, cand, rep)
    i = 0
    for s in range(len(bounds) - 1):
        s0 = bounds[s]
        s1 = bounds[s + 1]
        # Rebuild the free-slot heap for the replicas routable in this segment.
        size = 0
        for k in range(len(cand)):
            r = cand[k]
            if rep[r, F_FROM] <= s0 < rep[r, F_UNTIL]:
                for j in range(slots):
                    f = slot[r, j, E_END]
                    size = _slot_push(hk, hr, size, f if f > s0 else s0, r, j)
        # One action per pass: drop a queued request that gave up, start the queue's head or the
        # arrival on the earliest free slot, or queue / drop the arrival. The slot-heap and
        # completion code is written out once, by hand (see the note above ``_retire``).
        while True:
            has_arrival = i < n and times[i] < s1
            t = times[i] if has_arrival else s1
            found = False
            if sched_state[S_BUF_COUNT] > 0:
                h = sched_state[S_BUF_HEAD]
                deadline = queue[h, 0] + timeout
                if deadline <= t and (size == 0 or deadline < hk[0]):
                    counters[C_TIMEOUT] += 1
                    sched_state[S_BUF_HEAD] = (h + 1) % q_cap
                    sched_state[S_BUF_COUNT] -= 1
                    continue
                if size > 0 and hk[0] <= t:
                    now = hk[0]
                    arrival = queue[h, 0]
                    span = queue[h, 1]
                    sched_state[S_BUF_HEAD] = (h + 1) % q_cap
                    sched_state[S_BUF_COUNT] -= 1
                    found = True
            if not found:
                if not has_arrival:
                    break
                a = times[i]
                if sched_state[S_BUF_COUNT] == 0 and size > 0 and hk[0] <= a:
                    now = a
                    arrival = a
                    span = service[i]
                    i += 1
                else:
                    if sched_state[S_BUF_COUNT] < q_cap:
                        tail = (sched_state[S_BUF_HEAD] + sched_state[S_BUF_COUNT]) % q_cap
                        queue[tail, 0] = a
                        queue[tail, 1] = service[i]
                        sched_state[S_BUF_COUNT] += 1
                    else:
                        counters[C_QUEUE_FULL] += 1
                    i += 1
                    continue
            # Take the earliest free slot (r, j) off the heap: sift the last entry down.
            r = hr[0, 0]
            j = hr[0, 1]
            size -= 1
            if size > 0:
                key = hk[size]
                kr = hr[size, 0]
                kj = hr[size, 1]
                p = 0
                while True:
                    child = 2 * p + 1
                    if child >= size:
                        break
                    if child + 1 < size and hk[child + 1] < hk[child]:
                        child += 1
                    if hk[child] >= key:
                        break
                    hk[p] = hk[child]
                    hr[p, 0] = hr[child, 0]
                    hr[p, 1] = hr[child, 1]
                    p = child
                hk[p] = key
                hr[p, 0] = kr
                hr[p, 1] = kj
            # Record the completion of the request that held the slot.
            if slot_busy[r, j]:
                end = slot[r, j, E_END]
                busy_span = _overlap(slot[r, j, E_START], end, t0, t1)
                rep[r, F_BUSY] += busy_span
                rep[r, F_INSYS] += busy_span
                latency = end - slot[r, j, E_ARR]
                bk = _bucket(latency)
                hist[0, bk] += 1
                hist[1, bk] += 1
                hist[2, _bucket(slot[r, j, E_START] - slot[r, j, E_ARR])] += 1
                counters[C_COMPLETED] += 1
                if latency <= slo_latency:
                    counters[C_SLO_OK] += 1
            # Start the request on it.
            if now < rep[r, F_WARM]:
                span = span * slowdown
            end = now + span
            slot[r, j, E_START] = now
            slot[r, j, E_ARR] = arrival
            slot[r, j, E_END] = end
            slot_busy[r, j] = True
            if end > rep[r, F_LAST]:
                rep[r, F_LAST] = end
            # Put the slot back with its new free time: sift up from the bottom.
            p = size
            size += 1
            while p > 0:
                parent = (p - 1) >> 1
                if hk[parent] <= end:
                    break
                hk[p] = hk[parent]
                hr[p, 0] = hr[parent, 0]
                hr[p, 1] = hr[parent, 1]
                p = parent
            hk[p] = end
            hr[p, 0] = r
            hr[p, 1] = j
    # Close the tick: retire finished slots, apply crashes, integrate running work.
    for k in range(len(cand)):
        r = cand[k]
        crash = rep[r, F_CRASH]
        for j in range(slots):
            if not slot_busy[r, j]:
                continue
            end = slot[r, j, E_END]
            if end <= t1 and end <= crash:
                _retire_slot(r, j, t0, t1, slot, slot_busy, rep, hist, counters, slo_latency)
            elif crash <= t1:
                span = _overlap(slot[r, j, E_START], crash, t0, t1)
                rep[r, F_BUSY] += span
                rep[r, F_INSYS] += span
                counters[C_CRASH] += 1
                slot_busy[r, j] = False
            else:
                span = _overlap(slot[r, j, E_START], t1, t0, t1)
                rep[r, F_BUSY] += span
                rep[r, F_INSYS] += span
