"""The pure balancing algorithms (tidal.loadbalance): each one's logic, and agreement with the
simulator's compiled versions where they are meant to be identical."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tidal.loadbalance import (
    ALGORITHMS,
    Backend,
    ConsistentHash,
    HashRing,
    LeastConnections,
    PowerOfTwo,
    RandomChoice,
    RoundRobin,
    WeightedRoundRobin,
    make_balancer,
    point_hash,
    smooth_wrr_schedule,
    splitmix64,
)


def backends(*loads: int, weights: list[int] | None = None) -> list[Backend]:
    weights = weights or [10] * len(loads)
    return [Backend(f"w{i}", n, w) for i, (n, w) in enumerate(zip(loads, weights, strict=True))]


def test_round_robin_cycles_in_order():
    rr = RoundRobin()
    pool = backends(0, 0, 0)
    assert [rr.pick(pool).id for _ in range(7)] == ["w0", "w1", "w2", "w0", "w1", "w2", "w0"]


def test_round_robin_continues_counter_when_set_changes():
    rr = RoundRobin()
    pool = backends(0, 0, 0)
    rr.pick(pool)
    rr.pick(pool)  # counter is now 2
    assert rr.pick(pool[:2]).id == "w0"  # 2 % 2 == 0, as the simulator's S_RR % m


def test_empty_candidates_raise():
    for name in ALGORITHMS:
        with pytest.raises(ValueError, match="no routable replica"):
            make_balancer(name).pick([])


def test_least_connections_picks_fewest_and_breaks_ties_by_order():
    lc = LeastConnections()
    assert lc.pick(backends(3, 1, 2)).id == "w1"
    assert lc.pick(backends(2, 1, 1)).id == "w1"
    assert lc.pick(backends(0, 0, 0)).id == "w0"


def test_power_of_two_never_picks_the_most_loaded_of_two_and_spreads_load():
    p2c = PowerOfTwo(seed=1)
    pool = backends(5, 0)
    assert all(p2c.pick(pool).id == "w1" for _ in range(50))
    # With three replicas the most loaded one can only win if it is sampled twice, which the
    # distinct second sample forbids.
    pool3 = backends(9, 1, 1)
    picks = Counter(p2c.pick(pool3).id for _ in range(600))
    assert picks["w0"] == 0
    assert picks["w1"] > 150 and picks["w2"] > 150


def test_power_of_two_is_deterministic_given_seed():
    pool = backends(0, 0, 0, 0)
    s1, s2 = PowerOfTwo(seed=3), PowerOfTwo(seed=3)
    assert [s1.pick(pool).id for _ in range(50)] == [s2.pick(pool).id for _ in range(50)]


def test_random_is_roughly_uniform():
    rnd = RandomChoice(seed=0)
    pool = backends(0, 0, 0, 0)
    counts = Counter(rnd.pick(pool).id for _ in range(4000))
    assert set(counts) == {"w0", "w1", "w2", "w3"}
    assert all(800 < n < 1200 for n in counts.values())


def test_smooth_wrr_schedule_is_nginx_order():
    # nginx's documented example: weights a=5, b=1, c=1 give a a b a c a a.
    assert smooth_wrr_schedule([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0]
    assert smooth_wrr_schedule([1, 1]) == [0, 1]
    with pytest.raises(ValueError):
        smooth_wrr_schedule([1, 0])


def test_weighted_round_robin_respects_weights_and_rebuilds_on_change():
    wrr = WeightedRoundRobin()
    pool = backends(0, 0, weights=[30, 10])
    picks = Counter(wrr.pick(pool).id for _ in range(400))
    assert picks == {"w0": 300, "w1": 100}
    pool = backends(0, 0, weights=[10, 10])
    picks = Counter(wrr.pick(pool).id for _ in range(400))
    assert picks == {"w0": 200, "w1": 200}


def test_consistent_hash_is_sticky_and_moves_few_keys():
    ch = ConsistentHash(vnodes=100)
    pool = [Backend(f"w{i}") for i in range(5)]
    keys = [f"user-{k}" for k in range(2000)]
    before = {k: ch.pick(pool, k).id for k in keys}
    assert before == {k: ch.pick(pool, k).id for k in keys}  # same key, same replica
    share = Counter(before.values())
    assert all(250 < n < 550 for n in share.values()), share
    # Remove one replica: only its keys move, and they spread over the rest.
    smaller = [b for b in pool if b.id != "w2"]
    after = {k: ch.pick(smaller, k).id for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert set(moved) == {k for k in keys if before[k] == "w2"}
    # Add one: roughly 1/6 of the keys move, all of them to the newcomer.
    larger = pool + [Backend("w5")]
    grown = {k: ch.pick(larger, k).id for k in keys}
    moved = [k for k in keys if before[k] != grown[k]]
    assert all(grown[k] == "w5" for k in moved)
    assert 150 < len(moved) < 550


def test_consistent_hash_without_key_falls_back_to_round_robin():
    ch = ConsistentHash()
    pool = backends(0, 0, 0)
    assert [ch.pick(pool).id for _ in range(4)] == ["w0", "w1", "w2", "w0"]


def test_hash_ring_validates():
    with pytest.raises(ValueError):
        HashRing(["a", "a"])
    with pytest.raises(ValueError):
        HashRing(["a"], vnodes=0)
    with pytest.raises(ValueError):
        HashRing([]).owner("k")


def test_make_balancer_names():
    for name in ALGORITHMS:
        assert make_balancer(name, seed=0).name == name
    with pytest.raises(ValueError, match="unknown balancing algorithm"):
        make_balancer("central_queue")


# ----------------------------------------------------------------- agreement with the simulator


def test_splitmix64_matches_simulator():
    from tidal.sim.dataplane import _splitmix64

    for x in [0, 1, 42, 2**63 - 1, 2**64 - 1, 123456789123456789]:
        assert splitmix64(x) == int(_splitmix64(np.uint64(x)))


def test_hash_ring_owners_match_simulator():
    from tidal.sim.dataplane import _build_ring, _ring_lookup

    uids = np.array([3, 17, 4, 99, 12], dtype=np.int64)
    elig = np.arange(len(uids), dtype=np.int64)
    vnodes = 20
    pts = np.zeros(len(uids) * vnodes, dtype=np.uint64)
    owner = np.zeros(len(uids) * vnodes, dtype=np.int64)
    n = _build_ring(elig, uids, vnodes, pts, owner)
    ring = HashRing([int(u) for u in uids], vnodes)
    assert [int(p) for p in pts[:n]] == ring._points
    for key in [0, 1, 5, 77, 1_000_003, 2**40 + 5, -3]:
        sim_slot = int(_ring_lookup(np.int64(key), pts, owner, n))
        assert ring.owner(key) == int(uids[sim_slot])
    assert point_hash(-3) == splitmix64(2**64 - 3)


def test_wrr_schedule_matches_simulator():
    from tidal.sim.dataplane import _build_wrr

    weights = np.array([10, 3, 7, 10, 1], dtype=np.int64)
    elig = np.arange(len(weights), dtype=np.int64)
    sched = np.zeros(int(weights.sum()), dtype=np.int64)
    total = _build_wrr(elig, weights, sched)
    assert [int(x) for x in sched[:total]] == smooth_wrr_schedule([int(w) for w in weights])


def test_routing_stream_matches_simulator():
    from tidal.loadbalance import XorShift64Star, seed_state
    from tidal.sim.dataplane import _next_uniform
    from tidal.sim.dataplane import seed_state as sim_seed_state

    for seed in (0, 1, 7, 2**40 + 3):
        assert seed_state(seed) == sim_seed_state(seed) & (2**64 - 1)
        live, x = XorShift64Star(seed), np.uint64(seed_state(seed))
        for m in (2, 3, 7, 100, 2**31):
            for _ in range(200):
                x, want = _next_uniform(np.uint64(x), m)  # np.uint64 again: numba hands back a Python int
                assert live.below(m) == int(want)


class SimRouter:
    """The simulator's compiled routing (``_prepare_routing`` + ``_serve_requests``), one request at a time.

    Before each request every replica's in-flight heap is set to the wanted count with entries that
    never end, so the compiled loop compares exactly those counts; the replica whose heap grew is the
    one it picked. The scheduler state (round-robin counter, RNG, ring and WRR caches) carries on
    from request to request, as within a simulation.
    """

    def __init__(self, algo_name: str, uids: list[int], weights: list[int], seed: int, vnodes: int = 16) -> None:
        from tidal.sim import dataplane as dp
        from tidal.sim.histogram import N_BUCKETS
        from tidal.sim.state import BALANCER_CODES

        self.dp = dp
        self.algo = BALANCER_CODES[algo_name]
        n = len(uids)
        self.uid = np.array(uids, dtype=np.int64)
        self.weight = np.array(weights, dtype=np.int64)
        self.vnodes = vnodes
        self.sched = np.zeros(dp.N_SCHED, dtype=np.int64)
        self.sched[dp.S_RNG] = dp.seed_state(seed)
        self.sched[dp.S_RING_SIG] = -1
        self.sched[dp.S_WRR_SIG] = -1
        self.ring_pts = np.zeros(n * vnodes, dtype=np.uint64)
        self.ring_owner = np.zeros(n * vnodes, dtype=np.int64)
        self.wrr_sched = np.zeros(n * 100, dtype=np.int64)
        self.slots, self.queue_cap = 1, 64
        self.heap = np.zeros((n, self.slots + self.queue_cap, 3))
        self.h_n = np.zeros(n, dtype=np.int64)
        self.rep = np.zeros((n, dp.N_FIELDS))
        self.rep[:, dp.F_FROM] = -np.inf
        self.rep[:, dp.F_UNTIL] = np.inf
        self.rep[:, dp.F_CRASH] = np.inf
        self.rep[:, dp.F_WARM] = -np.inf
        self.slot_free = np.zeros((n, self.slots))
        self.hist = np.zeros((3, N_BUCKETS), dtype=np.int64)
        self.counters = np.zeros(dp.N_COUNTERS, dtype=np.int64)

    def pick(self, elig: list[int], in_flight: list[int], key: int = 0) -> int:
        dp = self.dp
        for r, count in enumerate(in_flight):
            self.h_n[r] = count
            self.heap[r, :count, dp.E_END] = np.inf
        elig_arr = np.array(elig, dtype=np.int64)
        dp._prepare_routing(self.algo, elig_arr, self.uid, self.weight, self.vnodes, self.sched, self.ring_pts,
                            self.ring_owner, self.wrr_sched)
        before = self.h_n.copy()
        served = dp._serve_requests(
            np.zeros(1), np.ones(1), np.array([key], dtype=np.int64), 0, 1, np.inf, -np.inf, 0.0, 1.0, self.algo,
            elig_arr, self.sched, self.ring_pts, self.ring_owner, self.wrr_sched, self.slot_free, self.heap,
            self.h_n, self.rep, self.hist, self.counters, self.slots, self.queue_cap, np.inf, 1.0, 1.0)
        assert served == 1
        (grew,) = np.flatnonzero(self.h_n != before)
        return int(grew)


@pytest.mark.parametrize("name", ["round_robin", "least_connections", "power_of_two", "random",
                                  "weighted_round_robin", "consistent_hash"])
def test_live_balancers_pick_what_the_simulator_picks(name):
    """The same candidate sets (changing, sometimes one), in-flight counts (with many ties), weights
    (changing), keys and seed: every one of 600 picks agrees with the compiled data plane."""
    rng = np.random.default_rng(11)
    n = 6
    uids = [int(u) for u in rng.choice(10_000, size=n, replace=False)]
    weights = [int(w) for w in rng.integers(1, 11, size=n)]
    seed = 1234
    sim = SimRouter(name, uids, weights, seed)
    live = make_balancer(name, seed=seed, vnodes=sim.vnodes)
    picks = []
    for step in range(600):
        if step == 300 and name == "weighted_round_robin":  # a weight change rebuilds both schedules
            weights[2] = 7 if weights[2] != 7 else 3
            sim.weight[2] = weights[2]
        # Candidates in slot order (as the simulator's routable list): all, a subset, or just one.
        size = n if step % 5 else int(rng.integers(1, n + 1))
        elig = sorted(int(r) for r in rng.choice(n, size=size, replace=False))
        in_flight = [int(c) for c in rng.integers(0, 3, size=n)]
        key = int(rng.integers(0, 2**62))
        want = sim.pick(elig, in_flight, key)
        candidates = [Backend(uids[r], in_flight[r], weights[r]) for r in elig]
        got = live.pick(candidates, key if name == "consistent_hash" else None)
        assert got.id == uids[want], f"pick {step}: live {got.id}, simulator {uids[want]}"
        picks.append(want)
    assert len(set(picks)) == n  # every replica was picked at some point: the comparison covered them all


def test_weighted_round_robin_schedule_reduced_by_common_factor_picks_the_same():
    # Weights (20, 30, 10) share a factor 10: the live schedule is the period of (2, 3, 1).
    a, b = WeightedRoundRobin(), WeightedRoundRobin()
    pool = backends(0, 0, 0, weights=[20, 30, 10])
    reduced = backends(0, 0, 0, weights=[2, 3, 1])
    full = smooth_wrr_schedule([20, 30, 10])
    assert [a.pick(pool).id for _ in range(120)] == [f"w{i}" for i in full * 2]
    assert [b.pick(reduced).id for _ in range(120)] == [f"w{i}" for i in full * 2]
