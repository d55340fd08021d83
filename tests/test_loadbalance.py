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
