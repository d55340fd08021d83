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

from tidal.sim.histogram import INV_LOG_GROWTH, LATENCY_MIN, N_BUCKETS

# Balancer codes (kept in one place: tidal.sim.state.BALANCER_CODES maps names to these).
RR, WRR, RANDOM, LEAST, P2C, HASH, CENTRAL = 0, 1, 2, 3, 4, 5, 6

# Indices into the per-tick counter vector.
C_ARRIVALS, C_COMPLETED, C_QUEUE_FULL, C_TIMEOUT, C_BUFFER_FULL, C_CRASH, C_SLO_OK = range(7)
N_COUNTERS = 7

# Indices into the integer scheduler state vector.
S_RR, S_BUF_HEAD, S_BUF_COUNT, S_RING_SIG, S_RING_LEN, S_WRR_SIG, S_WRR_LEN = range(7)
N_SCHED = 7

INF = math.inf


@njit(cache=True)
def seed_dataplane(seed: int) -> None:
    """Seed the data plane's routing random stream (numba keeps its own generator)."""
    np.random.seed(seed)


@njit(cache=True, inline="always")
def _overlap(a: float, b: float, t0: float, t1: float) -> float:
    lo = a if a > t0 else t0
    hi = b if b < t1 else t1
    return hi - lo if hi > lo else 0.0


@njit(cache=True, inline="always")
def _bucket(latency: float) -> int:
    if latency < LATENCY_MIN:
        return 0
    b = int(math.log(latency / LATENCY_MIN) * INV_LOG_GROWTH) + 1
    return b if b < N_BUCKETS else N_BUCKETS - 1


@njit(cache=True, inline="always")
def _record_latency(latency, hist_tick, hist_total, counters, slo_latency):
    b = _bucket(latency)
    hist_tick[b] += 1
    hist_total[b] += 1
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


@njit(cache=True)
def _heap_push(h_end, h_start, h_arr, h_n, r, end, start, arrival):
    i = h_n[r]
    h_n[r] = i + 1
    while i > 0:
        parent = (i - 1) >> 1
        if h_end[r, parent] <= end:
            break
        h_end[r, i] = h_end[r, parent]
        h_start[r, i] = h_start[r, parent]
        h_arr[r, i] = h_arr[r, parent]
        i = parent
    h_end[r, i] = end
    h_start[r, i] = start
    h_arr[r, i] = arrival


@njit(cache=True)
def _heap_pop(h_end, h_start, h_arr, h_n, r):
    """Remove the root of replica ``r``'s heap (the caller has read it)."""
    n = h_n[r] - 1
    h_n[r] = n
    if n == 0:
        return
    end = h_end[r, n]
    start = h_start[r, n]
    arrival = h_arr[r, n]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and h_end[r, child + 1] < h_end[r, child]:
            child += 1
        if h_end[r, child] >= end:
            break
        h_end[r, i] = h_end[r, child]
        h_start[r, i] = h_start[r, child]
        h_arr[r, i] = h_arr[r, child]
        i = child
    h_end[r, i] = end
    h_start[r, i] = start
    h_arr[r, i] = arrival


@njit(cache=True)
def _advance(r, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys,
             hist_tick, hist_total, counters, slo_latency):
    """Retire replica ``r``'s requests that ended by ``t``; apply its crash if ``t`` passed it."""
    limit = t if t < crash_at[r] else crash_at[r]
    while h_n[r] > 0 and h_end[r, 0] <= limit:
        end = h_end[r, 0]
        start = h_start[r, 0]
        arrival = h_arr[r, 0]
        _heap_pop(h_end, h_start, h_arr, h_n, r)
        insys[r] += _overlap(arrival, end, t0, t1)
        if start < 0.0:  # timed out while waiting: dropped at ``end``
            counters[C_TIMEOUT] += 1
        else:
            busy[r] += _overlap(start, end, t0, t1)
            _record_latency(end - arrival, hist_tick, hist_total, counters, slo_latency)
    if t >= crash_at[r] and h_n[r] > 0:
        crash = crash_at[r]
        for i in range(h_n[r]):
            insys[r] += _overlap(h_arr[r, i], crash, t0, t1)
            if h_start[r, i] >= 0.0:
                busy[r] += _overlap(h_start[r, i], crash, t0, t1)
        counters[C_CRASH] += h_n[r]
        h_n[r] = 0


@njit(cache=True)
def _assign(r, t, arrival, service, slots, queue_cap, timeout, slot_free, warm_until, slowdown,
            h_end, h_start, h_arr, h_n, last_end, counters):
    """Queue a request on replica ``r`` at time ``t`` (its in-flight heap is current at ``t``)."""
    if h_n[r] >= slots + queue_cap:
        counters[C_QUEUE_FULL] += 1
        return
    best = 0
    best_free = slot_free[r, 0]
    for j in range(1, slots):
        if slot_free[r, j] < best_free:
            best_free = slot_free[r, j]
            best = j
    start = t if t > best_free else best_free
    if start - arrival > timeout:
        end = arrival + timeout
        if end < t:
            end = t
        _heap_push(h_end, h_start, h_arr, h_n, r, end, -1.0, arrival)
    else:
        if start < warm_until[r]:
            service = service * slowdown
        end = start + service
        slot_free[r, best] = end
        _heap_push(h_end, h_start, h_arr, h_n, r, end, start, arrival)
    if end > last_end[r]:
        last_end[r] = end


# --------------------------------------------------------------------------- segments & rings


@njit(cache=True)
def _segment_bounds(t0, t1, cand, acc_from, acc_until, warm_until):
    """Sorted distinct times in (t0, t1) at which the routable set or a replica's speed changes."""
    points = np.empty(3 * len(cand) + 2)
    k = 0
    points[k] = t0
    k += 1
    for i in range(len(cand)):
        r = cand[i]
        for x in (acc_from[r], acc_until[r], warm_until[r]):
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
def _routable(s0, cand, acc_from, acc_until):
    elig = np.empty(len(cand), dtype=np.int64)
    m = 0
    for i in range(len(cand)):
        r = cand[i]
        if acc_from[r] <= s0 < acc_until[r]:
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
def _pick(algo, elig, key, t, t0, t1, sched_state, ring_pts, ring_owner, wrr_sched,
          h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency):
    m = len(elig)
    if m == 1:
        return elig[0]
    if algo == P2C:
        i = np.random.randint(0, m)
        j = np.random.randint(0, m - 1)
        if j >= i:
            j += 1
        a = elig[i]
        b = elig[j]
        _advance(b, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
        _advance(a, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
        return b if h_n[b] < h_n[a] else a
    if algo == RR:
        k = sched_state[S_RR] % m
        sched_state[S_RR] += 1
        return elig[k]
    if algo == RANDOM:
        return elig[np.random.randint(0, m)]
    if algo == LEAST:
        best = elig[0]
        _advance(best, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
        for i in range(1, m):
            r = elig[i]
            _advance(r, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
            if h_n[r] < h_n[best]:
                best = r
        return best
    if algo == HASH:
        return _ring_lookup(key, ring_pts, ring_owner, sched_state[S_RING_LEN])
    # WRR
    k = sched_state[S_RR] % sched_state[S_WRR_LEN]
    sched_state[S_RR] += 1
    return wrr_sched[k]


@njit(cache=True)
def run_tick(t0, t1, times, service, keys, algo, cand, uid, acc_from, acc_until, crash_at,
             warm_until, slowdown, weight, slot_free, h_end, h_start, h_arr, h_n, last_end,
             slots, queue_cap, timeout, sched_state, buf_arr, buf_svc, buf_key, buf_timeout,
             vnodes, ring_pts, ring_owner, wrr_sched, hist_tick, hist_total, counters,
             slo_latency, busy, insys):
    """Serve the arrivals of ``[t0, t1)`` on the per-replica-queue model.

    ``cand`` lists every replica slot that may route or hold requests during the tick. Counters,
    ``hist_tick``, ``busy`` and ``insys`` accumulate this tick's figures (the caller zeroes them).
    """
    n = len(times)
    counters[C_ARRIVALS] += n
    bounds = _segment_bounds(t0, t1, cand, acc_from, acc_until, warm_until)
    buf_cap = len(buf_arr)
    i = 0
    for s in range(len(bounds) - 1):
        s0 = bounds[s]
        s1 = bounds[s + 1]
        elig = _routable(s0, cand, acc_from, acc_until)
        m = len(elig)
        # Expire buffered requests that have waited too long.
        while sched_state[S_BUF_COUNT] > 0 and buf_arr[sched_state[S_BUF_HEAD]] + buf_timeout <= s0:
            counters[C_TIMEOUT] += 1
            sched_state[S_BUF_HEAD] = (sched_state[S_BUF_HEAD] + 1) % buf_cap
            sched_state[S_BUF_COUNT] -= 1
        if m > 0:
            if algo == HASH:
                sig = _signature(elig, uid, vnodes)
                if sig != sched_state[S_RING_SIG]:
                    sched_state[S_RING_LEN] = _build_ring(elig, uid, vnodes, ring_pts, ring_owner)
                    sched_state[S_RING_SIG] = sig
            elif algo == WRR:
                sig = _signature(elig, uid, 0)
                for k in range(m):
                    sig = sig ^ (weight[elig[k]] << (k % 7))
                if sig != sched_state[S_WRR_SIG]:
                    sched_state[S_WRR_LEN] = _build_wrr(elig, weight, wrr_sched)
                    sched_state[S_WRR_SIG] = sig
            # Scale from zero: hand the buffer to the replicas that just became routable.
            while sched_state[S_BUF_COUNT] > 0:
                h = sched_state[S_BUF_HEAD]
                r = _pick(algo, elig, buf_key[h], s0, t0, t1, sched_state, ring_pts, ring_owner, wrr_sched,
                          h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
                _advance(r, s0, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
                _assign(r, s0, buf_arr[h], buf_svc[h], slots, queue_cap, timeout, slot_free, warm_until, slowdown,
                        h_end, h_start, h_arr, h_n, last_end, counters)
                sched_state[S_BUF_HEAD] = (h + 1) % buf_cap
                sched_state[S_BUF_COUNT] -= 1
        while i < n and times[i] < s1:
            t = times[i]
            if m == 0:
                if sched_state[S_BUF_COUNT] < buf_cap:
                    tail = (sched_state[S_BUF_HEAD] + sched_state[S_BUF_COUNT]) % buf_cap
                    buf_arr[tail] = t
                    buf_svc[tail] = service[i]
                    buf_key[tail] = keys[i]
                    sched_state[S_BUF_COUNT] += 1
                else:
                    counters[C_BUFFER_FULL] += 1
            else:
                r = _pick(algo, elig, keys[i], t, t0, t1, sched_state, ring_pts, ring_owner, wrr_sched,
                          h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
                if algo != P2C and algo != LEAST:
                    _advance(r, t, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
                _assign(r, t, t, service[i], slots, queue_cap, timeout, slot_free, warm_until, slowdown,
                        h_end, h_start, h_arr, h_n, last_end, counters)
            i += 1
    # Close the tick: retire everything that ended by t1 and integrate what is still in flight.
    while sched_state[S_BUF_COUNT] > 0 and buf_arr[sched_state[S_BUF_HEAD]] + buf_timeout <= t1:
        counters[C_TIMEOUT] += 1
        sched_state[S_BUF_HEAD] = (sched_state[S_BUF_HEAD] + 1) % buf_cap
        sched_state[S_BUF_COUNT] -= 1
    for k in range(len(cand)):
        r = cand[k]
        _advance(r, t1, t0, t1, h_end, h_start, h_arr, h_n, crash_at, busy, insys, hist_tick, hist_total, counters, slo_latency)
        for q in range(h_n[r]):
            insys[r] += _overlap(h_arr[r, q], t1, t0, t1)
            if h_start[r, q] >= 0.0:
                busy[r] += _overlap(h_start[r, q], t1, t0, t1)


# --------------------------------------------------------------------------- central queue


@njit(cache=True)
def _slot_push(hk, hr, hj, size, key, r, j):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if hk[parent] <= key:
            break
        hk[i] = hk[parent]
        hr[i] = hr[parent]
        hj[i] = hj[parent]
        i = parent
    hk[i] = key
    hr[i] = r
    hj[i] = j
    return size + 1


@njit(cache=True)
def _slot_pop(hk, hr, hj, size):
    n = size - 1
    if n == 0:
        return 0
    key = hk[n]
    r = hr[n]
    j = hj[n]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and hk[child + 1] < hk[child]:
            child += 1
        if hk[child] >= key:
            break
        hk[i] = hk[child]
        hr[i] = hr[child]
        hj[i] = hj[child]
        i = child
    hk[i] = key
    hr[i] = r
    hj[i] = j
    return n


@njit(cache=True)
def _retire_slot(r, j, t0, t1, slot_free, slot_start, slot_arr, slot_busy, busy, insys,
                 hist_tick, hist_total, counters, slo_latency):
    """Record the completion of the request that occupied slot (r, j)."""
    if slot_busy[r, j]:
        end = slot_free[r, j]
        busy[r] += _overlap(slot_start[r, j], end, t0, t1)
        insys[r] += _overlap(slot_start[r, j], end, t0, t1)
        _record_latency(end - slot_arr[r, j], hist_tick, hist_total, counters, slo_latency)
        slot_busy[r, j] = False


@njit(cache=True)
def run_tick_central(t0, t1, times, service, acc_from, acc_until, crash_at, warm_until, slowdown,
                     cand, slot_free, slot_start, slot_arr, slot_busy, last_end, slots, timeout,
                     sched_state, q_arr, q_svc, hk, hr, hj, hist_tick, hist_total, counters,
                     slo_latency, busy, insys):
    """Serve the arrivals of ``[t0, t1)`` from one shared FCFS queue (M/M/c-style activator).

    The shared queue (``q_arr``/``q_svc``, a ring using ``S_BUF_HEAD``/``S_BUF_COUNT``) also
    buffers while no replica is ready. ``busy`` and ``insys`` per replica count running requests.
    """
    n = len(times)
    counters[C_ARRIVALS] += n
    q_cap = len(q_arr)
    bounds = _segment_bounds(t0, t1, cand, acc_from, acc_until, warm_until)
    i = 0
    for s in range(len(bounds) - 1):
        s0 = bounds[s]
        s1 = bounds[s + 1]
        # Rebuild the free-slot heap for the replicas routable in this segment.
        size = 0
        for k in range(len(cand)):
            r = cand[k]
            if acc_from[r] <= s0 < acc_until[r]:
                for j in range(slots):
                    f = slot_free[r, j]
                    size = _slot_push(hk, hr, hj, size, f if f > s0 else s0, r, j)
        while True:
            t = times[i] if i < n and times[i] < s1 else s1
            # Start queued requests on slots that free up before t.
            while sched_state[S_BUF_COUNT] > 0:
                h = sched_state[S_BUF_HEAD]
                if q_arr[h] + timeout <= t and (size == 0 or q_arr[h] + timeout < hk[0]):
                    counters[C_TIMEOUT] += 1  # gave up before any slot could take it
                    sched_state[S_BUF_HEAD] = (h + 1) % q_cap
                    sched_state[S_BUF_COUNT] -= 1
                    continue
                if size == 0 or hk[0] > t:
                    break
                f = hk[0]
                r = hr[0]
                j = hj[0]
                size = _slot_pop(hk, hr, hj, size)
                if f - q_arr[h] > timeout:
                    counters[C_TIMEOUT] += 1
                    sched_state[S_BUF_HEAD] = (h + 1) % q_cap
                    sched_state[S_BUF_COUNT] -= 1
                    size = _slot_push(hk, hr, hj, size, f, r, j)
                    continue
                _retire_slot(r, j, t0, t1, slot_free, slot_start, slot_arr, slot_busy, busy, insys,
                             hist_tick, hist_total, counters, slo_latency)
                svc = q_svc[h] * slowdown if f < warm_until[r] else q_svc[h]
                slot_start[r, j] = f
                slot_arr[r, j] = q_arr[h]
                slot_free[r, j] = f + svc
                slot_busy[r, j] = True
                if f + svc > last_end[r]:
                    last_end[r] = f + svc
                size = _slot_push(hk, hr, hj, size, f + svc, r, j)
                sched_state[S_BUF_HEAD] = (h + 1) % q_cap
                sched_state[S_BUF_COUNT] -= 1
            if not (i < n and times[i] < s1):
                break
            a = times[i]
            if sched_state[S_BUF_COUNT] == 0 and size > 0 and hk[0] <= a:
                r = hr[0]
                j = hj[0]
                size = _slot_pop(hk, hr, hj, size)
                _retire_slot(r, j, t0, t1, slot_free, slot_start, slot_arr, slot_busy, busy, insys,
                             hist_tick, hist_total, counters, slo_latency)
                svc = service[i] * slowdown if a < warm_until[r] else service[i]
                slot_start[r, j] = a
                slot_arr[r, j] = a
                slot_free[r, j] = a + svc
                slot_busy[r, j] = True
                if a + svc > last_end[r]:
                    last_end[r] = a + svc
                size = _slot_push(hk, hr, hj, size, a + svc, r, j)
            elif sched_state[S_BUF_COUNT] < q_cap:
                tail = (sched_state[S_BUF_HEAD] + sched_state[S_BUF_COUNT]) % q_cap
                q_arr[tail] = a
                q_svc[tail] = service[i]
                sched_state[S_BUF_COUNT] += 1
            else:
                counters[C_QUEUE_FULL] += 1
            i += 1
    # Close the tick: retire finished slots, apply crashes, integrate running work.
    for k in range(len(cand)):
        r = cand[k]
        for j in range(slots):
            if not slot_busy[r, j]:
                continue
            end = slot_free[r, j]
            if end <= t1 and end <= crash_at[r]:
                _retire_slot(r, j, t0, t1, slot_free, slot_start, slot_arr, slot_busy, busy, insys,
                             hist_tick, hist_total, counters, slo_latency)
            elif crash_at[r] <= t1:
                busy[r] += _overlap(slot_start[r, j], crash_at[r], t0, t1)
                insys[r] += _overlap(slot_start[r, j], crash_at[r], t0, t1)
                counters[C_CRASH] += 1
                slot_busy[r, j] = False
            else:
                busy[r] += _overlap(slot_start[r, j], t1, t0, t1)
                insys[r] += _overlap(slot_start[r, j], t1, t0, t1)
