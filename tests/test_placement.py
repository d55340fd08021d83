"""Placement: the cheapest replica mix (ILP against brute force, the heuristic's bound) and the
cost–latency Pareto front."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tidal.placement import (
    DEFAULT_CAPS,
    InfeasibleDemand,
    ParetoPoint,
    ReplicaType,
    cheapest_meeting,
    non_dominated,
    pareto_front,
    predict_latency,
    solve,
    solve_heuristic,
    solve_ilp,
)
from tidal.placement.heuristic import greedy
from tidal.placement.model import REL_TOL, lp_bound, problem
from tidal.queueing.planning import LatencySLO, evaluate_replicas, min_replicas_for_slo
from tidal.queueing.service import service_time

GPUS = [
    ReplicaType("h100", price=4.0, service_time=0.05, concurrency=8),  # 160 req/s
    ReplicaType("a100", price=2.2, service_time=0.08, concurrency=8, available=6),  # 100 req/s
    ReplicaType("l4", price=0.8, service_time=0.2, concurrency=4, min_count=1),  # 20 req/s
]


def brute_force(types, demand, cap=1.0):
    """(cost, replicas) of the cheapest, then smallest, mix by enumeration."""
    prob = problem(types, demand, cap)
    ranges = []
    for t, theta in zip(types, prob.capacity, strict=True):
        # More of one type than it takes to cover the demand alone is never needed.
        most = max(t.min_count, math.ceil(prob.required / theta))
        if t.available is not None:
            most = min(most, t.available)
        ranges.append(range(t.min_count, most + 1))
    best = None
    for counts in itertools.product(*ranges):
        n = np.array(counts)
        if float(n @ prob.capacity) >= prob.required * (1 - REL_TOL):
            key = (round(float(n @ prob.price), 9), int(n.sum()))
            best = key if best is None or key < best else best
    return best


def random_instance(rng):
    k = int(rng.integers(1, 5))
    types = []
    for i in range(k):
        available = None if rng.random() < 0.4 else int(rng.integers(0, 8))
        min_count = 0 if rng.random() < 0.7 else int(rng.integers(0, 3 if available is None else available + 1))
        types.append(ReplicaType(f"t{i}", price=float(rng.choice([0.5, 1.0, 1.3, 2.0, 2.5, 3.7, 4.0])),
                                 throughput=float(rng.choice([5.0, 7.5, 10.0, 12.0, 25.0, 40.0])),
                                 available=available, min_count=min_count))
    most = sum(math.inf if t.available is None else t.available * t.capacity for t in types)
    demand = float(rng.uniform(0, min(most, 150.0)))
    cap = float(rng.choice([1.0, 0.9, 0.75, 0.6]))
    return types, demand * cap, cap


# --------------------------------------------------------------------------- the integer program


def test_ilp_matches_brute_force_on_random_small_instances():
    rng = np.random.default_rng(2024)
    checked = 0
    while checked < 60:
        types, demand, cap = random_instance(rng)
        try:
            expected = brute_force(types, demand, cap)
        except InfeasibleDemand:
            with pytest.raises(InfeasibleDemand):
                solve_ilp(types, demand, utilization_cap=cap)
            continue
        got = solve_ilp(types, demand, utilization_cap=cap)
        assert got.optimal and got.method == "ilp"
        assert (round(got.cost, 9), got.replicas) == expected, (types, demand, cap, got)
        assert got.capacity >= demand / cap * (1 - REL_TOL)
        assert got.lower_bound <= got.cost + 1e-9
        checked += 1


def test_ilp_respects_availability_min_counts_and_the_utilization_cap():
    got = solve(GPUS, 1000.0, utilization_cap=0.7)
    assert got.counts["a100"] <= 6 and got.counts["l4"] >= 1
    assert got.capacity >= 1000 / 0.7
    assert got.utilization == pytest.approx(1000 / got.capacity) and got.utilization <= 0.7
    assert list(got.counts) == ["h100", "a100", "l4"]  # every type, in input order
    assert got.cost == pytest.approx(sum(t.price * got.counts[t.name] for t in GPUS))
    assert "h100" in got.describe() and "/h" in got.describe()
    # a100 is cheapest per req/s (0.022 vs 0.025), so all 6 are used before any h100.
    assert got.counts["a100"] == 6
    # Demand the minimum counts already cover: nothing is added.
    assert solve(GPUS, 10.0).used() == {"l4": 1}
    assert solve(GPUS, 0.0).used() == {"l4": 1}


def test_ilp_breaks_cost_ties_by_fewest_replicas():
    types = [ReplicaType("small", price=1.0, throughput=10.0), ReplicaType("big", price=4.0, throughput=40.0),
             ReplicaType("free", price=0.0, throughput=1.0, available=50)]
    got = solve_ilp(types, 80.0)
    # The 50 free replicas cost nothing, so the cheapest mixes use them all and buy the last
    # 30 req/s for 3.0: three 'small' (one 'big' would cost 4.0).
    assert got.cost == pytest.approx(3.0)
    assert got.used() == {"small": 3, "free": 50}
    got = solve_ilp(types[:2], 80.0)
    assert got.used() == {"big": 2}  # not 8 x small, which costs the same


def test_infeasible_demand_is_a_clear_error():
    types = [ReplicaType("a100", price=2.0, throughput=100.0, available=4),
             ReplicaType("l4", price=0.8, throughput=20.0, available=10)]
    assert solve(types, 500.0, utilization_cap=0.9).used() == {"a100": 4, "l4": 8}  # 560 of 555.6 req/s
    with pytest.raises(InfeasibleDemand, match=r"demand 560 req/s at utilization cap 0\.9 needs 622\.222 req/s"):
        solve(types, 560.0, utilization_cap=0.9)
    with pytest.raises(InfeasibleDemand, match=r"needs 700 req/s of capacity, but all available replicas "
                                               r"together give only 600 req/s \(a100: 4 × 100/s, l4: 10 × 20/s\)"):
        solve(types, 700.0)
    for method in ("ilp", "heuristic"):
        with pytest.raises(InfeasibleDemand):
            solve(types, 700.0, method=method)
    assert isinstance(InfeasibleDemand("x"), ValueError)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"throughput": -1.0}, "throughput must be > 0"),
    ({"throughput": float("nan")}, "throughput must be a finite number"),
    ({"throughput": 10.0, "price": -1.0}, "price must be >= 0"),
    ({}, "give throughput"),
    ({"throughput": 10.0, "available": 1, "min_count": 2}, r"available \(1\) must be >= min_count \(2\)"),
    ({"throughput": 10.0, "min_count": -1}, "min_count must be an integer >= 0"),
    ({"throughput": 10.0, "available": 2.5}, "available must be an integer"),
    ({"service_time": 0.1, "concurrency": 0}, "concurrency must be an integer >= 1"),
    ({"service_time": 0.1, "throughput": 50.0}, "disagrees with concurrency / service_time"),
])
def test_bad_replica_types_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        ReplicaType("gpu", **{"price": 1.0, **kwargs})
    assert "'gpu'" in str(info.value)


def test_bad_problem_arguments():
    t = ReplicaType("a", price=1.0, throughput=10.0)
    with pytest.raises(ValueError, match="at least one replica type"):
        solve([], 10.0)
    with pytest.raises(ValueError, match="duplicate names"):
        solve([t, t], 10.0)
    with pytest.raises(ValueError, match="demand must be >= 0"):
        solve([t], -5.0)
    with pytest.raises(ValueError, match="utilization_cap must lie in"):
        solve([t], 5.0, utilization_cap=1.5)
    with pytest.raises(ValueError, match="utilization_cap must be > 0"):
        solve([t], 5.0, utilization_cap=0.0)
    with pytest.raises(ValueError, match="method"):
        solve([t], 5.0, method="annealing")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the heuristic


def test_heuristic_is_feasible_and_within_one_replica_price_of_the_ilp():
    rng = np.random.default_rng(7)
    gaps = []
    checked = 0
    while checked < 150:
        types, demand, cap = random_instance(rng)
        try:
            exact = solve_ilp(types, demand, utilization_cap=cap)
        except InfeasibleDemand:
            continue
        got = solve_heuristic(types, demand, utilization_cap=cap)
        prob = problem(types, demand, cap)
        counts = np.array([got.counts[t.name] for t in types])
        assert prob.feasible(counts), (types, demand, cap, got)
        assert got.method == "heuristic"
        assert got.cost >= exact.cost - 1e-9
        # The documented bound: greedy <= LP + one replica's price <= OPT + max price.
        assert got.cost <= exact.cost + max(t.price for t in types) + 1e-9
        # And the plain greedy (no local search) already meets it: LP rounding.
        assert float(greedy(prob) @ prob.price) <= lp_bound(prob)[0] + max(t.price for t in types) + 1e-9
        gaps.append(got.cost - exact.cost)
        checked += 1
    # Local search closes most of the gap in practice.
    assert np.mean(np.array(gaps) < 1e-9) > 0.8


def test_heuristic_scales_to_thousands_of_types():
    rng = np.random.default_rng(3)
    types = [ReplicaType(f"t{i}", price=float(rng.uniform(0.5, 5.0)), throughput=float(rng.uniform(5, 200)),
                         available=int(rng.integers(0, 20))) for i in range(3000)]
    demand = 40_000.0
    got = solve(types, demand)  # more than ILP_MAX_TYPES: the heuristic
    assert got.method == "heuristic"
    assert got.capacity >= demand * (1 - REL_TOL)
    assert all(got.counts[t.name] <= t.available for t in types)
    assert got.cost <= got.lower_bound + max(t.price for t in types) + 1e-9


# --------------------------------------------------------------------------- latency and the front


def test_single_type_latency_is_the_queueing_plan():
    t = ReplicaType("gpu", price=2.0, service_time=0.08, concurrency=4, service_cv=1.5)
    svc = service_time(0.08, 1.5, "gamma")
    slo = LatencySLO(0.5, 0.99)
    for n in (3, 5, 9):
        row = evaluate_replicas(200.0, svc, n, slo, concurrency=4)
        assert predict_latency([t], {"gpu": n}, 200.0) == pytest.approx(row.p99, rel=1e-12)
    assert predict_latency([t], {"gpu": 4}, 200.0) == math.inf  # 4 x 50 req/s: utilization 1


def test_mixed_latency_lies_between_the_pools():
    fast = ReplicaType("fast", price=4.0, service_time=0.05, concurrency=8)
    slow = ReplicaType("slow", price=1.0, service_time=0.2, concurrency=4)
    mixed = predict_latency([fast, slow], {"fast": 3, "slow": 6}, 400.0)
    # Each pool runs at 400 / 600 = 2/3 utilization on its share.
    alone_fast = predict_latency([fast], {"fast": 3}, 400.0 * 480 / 600)
    alone_slow = predict_latency([slow], {"slow": 6}, 400.0 * 120 / 600)
    assert alone_fast < mixed < alone_slow
    with pytest.raises(ValueError, match="service_time"):
        predict_latency([ReplicaType("x", price=1.0, throughput=10.0)], {"x": 2}, 5.0)
    with pytest.raises(ValueError, match="percentile"):
        predict_latency([fast], {"fast": 3}, 100.0, percentile=99)


def test_pareto_front_is_non_dominated_and_sorted():
    front = pareto_front(GPUS, 1000.0)
    assert len(front) >= 4
    costs = [p.cost for p in front]
    latencies = [p.latency for p in front]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    assert all(b < a for a, b in zip(latencies, latencies[1:], strict=False))  # strictly faster as it costs more
    for p in front:
        for q in front:
            assert not (q.cost <= p.cost and q.latency <= p.latency and (q.cost, q.latency) != (p.cost, p.latency))
        assert p.placement.capacity >= 1000.0 / p.utilization_cap * (1 - REL_TOL)
        assert p.placement.counts["a100"] <= 6 and p.placement.counts["l4"] >= 1
        assert p.latency == pytest.approx(predict_latency(GPUS, p.placement.counts, 1000.0))
        assert p.utilization_cap in DEFAULT_CAPS
    # The cheapest point is the tightest cap's ILP optimum.
    assert front[0].cost == pytest.approx(solve(GPUS, 1000.0, utilization_cap=max(DEFAULT_CAPS)).cost)


def test_non_dominated_filter():
    def point(cost, latency):
        return ParetoPoint(cost, latency, 0.99, 0.5, 0.5, None)  # type: ignore[arg-type]

    pts = [point(3, 0.2), point(1, 0.9), point(2, 0.5), point(2, 0.4), point(4, 0.3), point(1, 1.0), point(5, 0.1)]
    assert [(p.cost, p.latency) for p in non_dominated(pts)] == [(1, 0.9), (2, 0.4), (3, 0.2), (5, 0.1)]


def test_cheapest_meeting_an_slo_and_the_queueing_optimum():
    t = ReplicaType("gpu", price=2.0, service_time=0.08, concurrency=4)
    caps = [c / 100 for c in range(30, 100)]
    front = pareto_front([t], 300.0, caps=caps)
    # The service time alone has p99 = 80 ms x ln 100 = 368 ms; ask for 450 ms.
    pick = cheapest_meeting(front, 0.45)
    assert pick.latency <= 0.45
    # For one type the queueing planner's answer is the true optimum; the dense cap sweep finds it.
    n = min_replicas_for_slo(300.0, service_time(0.08, 1.0, "gamma"), LatencySLO(0.45, 0.99), concurrency=4)
    assert pick.placement.counts["gpu"] == n
    with pytest.raises(InfeasibleDemand, match="no point of the front meets latency 0.01s"):
        cheapest_meeting(front, 0.01)


def test_pareto_front_errors():
    limited = [ReplicaType("a", price=1.0, service_time=0.1, concurrency=1, available=5)]  # 50 req/s at most
    front = pareto_front(limited, 30.0)  # caps below 0.6 need more than 50 req/s: skipped
    assert all(p.utilization_cap >= 0.6 for p in front)
    with pytest.raises(InfeasibleDemand):
        pareto_front(limited, 60.0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        pareto_front(limited, 10.0, caps=[0.5, 1.0])
    with pytest.raises(ValueError, match="demand must be > 0"):
        pareto_front(limited, 0.0)
