"""Simulator mechanics: conservation, cold start, draining, timeouts, buffering, crashes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import Scripted, make_scenario
from tidal.sim import Simulation, simulate
from tidal.sim import dataplane as dp
from tidal.sim.state import DataPlaneState

BALANCERS = ["round_robin", "weighted_round_robin", "random", "least_connections", "power_of_two",
             "consistent_hash", "central_queue"]


def _ticks(result):
    return {name: np.asarray(result.ticks.column(name)) for name in result.ticks.column_names}


@pytest.mark.parametrize("balancer", BALANCERS)
def test_conservation_every_tick(balancer):
    """arrivals = completions + drops + in flight, at the end of every tick, under scaling."""
    scenario = make_scenario(
        rate=60.0, service={"distribution": "lognormal", "mean": 0.2, "cv": 1.5}, concurrency=2, replicas=3,
        balancer=balancer, duration=1800,
    )
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={
        "queue_limit": 20, "timeout": 2.0, "mtbf": 600.0,
        "cold_start": scenario.service.cold_start.model_copy(update={"mean": 20.0}),
        "warmup": scenario.service.warmup.model_copy(update={"duration": 10.0, "slowdown": 2.0}),
    })})
    policy = Scripted([(0, 3), (300, 10), (600, 1), (900, 0), (1000, 6), (1400, 2)])
    result = Simulation(scenario, policy).run()
    t = _ticks(result)
    arrived = np.cumsum(t["arrivals"])
    finished = np.cumsum(t["completions"]) + np.cumsum(t["drops"])
    assert np.array_equal(arrived - finished, t["in_flight"])
    assert (t["in_flight"] >= 0).all()
    s = result.summary
    assert s.arrivals == s.completions + s.drops + s.in_flight_at_end
    assert s.drops == sum(s.drops_by_reason.values())
    assert s.crashes > 0 and s.drops_by_reason["crash"] > 0


def test_deterministic_for_a_seed():
    scenario = make_scenario(rate=40.0, replicas=2, concurrency=2, duration=900, seed=5)
    a = simulate(scenario)
    b = simulate(scenario)
    assert a.summary == b.summary
    assert a.ticks.equals(b.ticks)
    c = simulate(scenario, seed=6)
    assert c.summary.arrivals != a.summary.arrivals


def test_cold_start_delays_service_and_buffer_holds_requests():
    """Scale from zero: nothing is served before the first replica is ready; buffered requests wait."""
    scenario = make_scenario(rate=5.0, service=0.01, replicas=0, duration=120, balancer="round_robin")
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={
        "cold_start": scenario.service.cold_start.model_copy(update={"mean": 30.0})})})
    result = Simulation(scenario, Scripted([(0, 1)])).run()
    t = _ticks(result)
    before = t["time"] < 30.0  # ticks starting before the replica is ready
    assert t["completions"][before].sum() == 0
    assert t["ready"][t["time"] + 15.0 < 30.0].max() == 0  # state columns are at the tick's end
    assert result.summary.drops == 0
    # The first requests arrived near t=0 and waited for the cold start.
    assert result.summary.latency_p99 > 20.0
    assert result.summary.completions == result.summary.arrivals - result.summary.in_flight_at_end


def test_buffer_limit_and_timeout_drop_while_no_replica_is_ready():
    scenario = make_scenario(rate=10.0, service=0.01, replicas=0, duration=120, balancer="random",
                             load_balancer={"buffer_limit": 50, "buffer_timeout": 20.0})
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={
        "cold_start": scenario.service.cold_start.model_copy(update={"mean": 60.0})})})
    result = Simulation(scenario, Scripted([(0, 1)])).run()
    s = result.summary
    assert s.drops_by_reason["buffer_full"] > 0
    assert s.drops_by_reason["timeout"] > 0
    assert s.latency_p999 <= 20.0 + 0.01 + 0.5  # nothing waited past the buffer timeout


def test_queue_timeout_bounds_waiting():
    """Overloaded single server: requests that would wait longer than the timeout are dropped."""
    scenario = make_scenario(rate=15.0, service=0.1, replicas=1, duration=600)
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={"timeout": 1.0})})
    result = simulate(scenario)
    s = result.summary
    assert s.drops_by_reason["timeout"] > 0
    assert s.wait_p99 <= 1.0 * 1.01
    assert s.latency_p999 <= (1.0 + 0.1) * 1.01
    # Throughput is the server's capacity: 10 req/s.
    assert s.completions / 600 == pytest.approx(10.0, rel=0.02)


def test_queue_limit_rejects_when_full():
    scenario = make_scenario(rate=30.0, service=0.1, replicas=1, duration=300)
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={"queue_limit": 5})})
    s = simulate(scenario).summary
    assert s.drops_by_reason["queue_full"] > 0
    assert s.wait_p99 <= 5 * 0.1 * 1.01 + 1e-9


def test_draining_replica_finishes_its_work_and_takes_no_new_requests():
    scenario = make_scenario(rate=50.0, service={"distribution": "exponential", "mean": 0.05}, replicas=4,
                             concurrency=1, duration=600, balancer="round_robin")
    result = Simulation(scenario, Scripted([(0, 4), (300, 1)])).run()
    t = _ticks(result)
    s = result.summary
    assert s.drops == 0
    assert s.completions + s.in_flight_at_end == s.arrivals
    after = t["time"] >= 330
    assert (t["spec"][after] == 1).all() and (t["draining"][after] == 0).all()
    # Billing stops when drained: well under 4 replicas for the second half.
    assert t["replica_seconds"][after].max() <= 1 * 15.0 + 1e-6


def test_draining_takes_nothing_after_it_starts():
    """Data-plane level: a replica whose routing window closes at t=5 receives nothing after."""
    st = DataPlaneState(balancer="round_robin", slots=1, queue_limit=100, timeout=None, buffer_limit=10,
                        buffer_timeout=None, hash_vnodes=10, slowdown=1.0, slo_latency=1.0, capacity=4)
    for r in range(2):
        st.reset_slot(r, uid=r, ready_at=0.0, warm_until=0.0, crash_at=math.inf)
    st.acc_until[1] = 5.0
    times = np.arange(0.0, 10.0, 0.01)
    st.serve(0.0, 10.0, np.arange(2, dtype=np.int64), times, np.full(len(times), 0.001),
             np.zeros(len(times), dtype=np.int64))
    assert st.last_end[1] <= 5.0 + 0.001 + 1e-9
    assert st.counters[dp.C_COMPLETED] == len(times)


def test_replica_never_serves_before_ready():
    """Data-plane level: a replica ready at t=3 starts nothing before 3 even with requests queued."""
    for balancer in BALANCERS:
        st = DataPlaneState(balancer=balancer, slots=2, queue_limit=100, timeout=None, buffer_limit=100,
                            buffer_timeout=None, hash_vnodes=10, slowdown=1.0, slo_latency=1.0, capacity=4)
        st.reset_slot(0, uid=0, ready_at=3.0, warm_until=3.0, crash_at=math.inf)
        times = np.linspace(0.0, 2.0, 50)
        st.serve(0.0, 10.0, np.arange(1, dtype=np.int64), times, np.full(50, 0.01), np.arange(50, dtype=np.int64))
        # Latencies are at least the wait until t=3.
        from tidal.sim import histogram
        assert histogram.quantiles(st.hist_total, (0.0001,))[0] >= (3.0 - 2.0) * 0.99, balancer
        assert st.counters[dp.C_COMPLETED] == 50, balancer


def test_warmup_slows_service():
    base = make_scenario(rate=0.05, service=0.5, replicas=0, duration=3600, balancer="round_robin")
    svc = base.service.model_copy(update={"warmup": base.service.warmup.model_copy(update={"duration": 1e6, "slowdown": 3.0})})
    slow = Simulation(base.model_copy(update={"service": svc}), Scripted([(0, 1)])).run().summary
    fast = Simulation(base, Scripted([(0, 1)])).run().summary
    assert slow.latency_p50 == pytest.approx(1.5, rel=0.02)
    assert fast.latency_p50 == pytest.approx(0.5, rel=0.02)


def test_crashes_lose_in_flight_requests_and_replicas_are_replaced():
    scenario = make_scenario(rate=40.0, service=0.2, replicas=4, concurrency=4, duration=3600)
    svc = scenario.service.model_copy(update={"mtbf": 300.0, "cold_start": scenario.service.cold_start.model_copy(update={"mean": 10.0})})
    result = simulate(scenario.model_copy(update={"service": svc}))
    s = result.summary
    t = _ticks(result)
    # About duration / mtbf crashes per replica.
    assert 4 * 3600 / 300 * 0.6 < s.crashes < 4 * 3600 / 300 * 1.5
    assert s.drops_by_reason["crash"] > 0
    assert (t["spec"] == 4).all()
    assert t["ready"][-20:].mean() > 3.0  # replaced after each crash


def test_consistent_hash_keeps_keys_on_one_replica():
    """The same key always lands on the same replica while membership is unchanged."""
    st = DataPlaneState(balancer="consistent_hash", slots=1, queue_limit=10_000, timeout=None, buffer_limit=10,
                        buffer_timeout=None, hash_vnodes=50, slowdown=1.0, slo_latency=1.0, capacity=8)
    for r in range(5):
        st.reset_slot(r, uid=r, ready_at=0.0, warm_until=0.0, crash_at=math.inf)
    n = 200
    st.serve(0.0, 100.0, np.arange(5, dtype=np.int64), np.linspace(0, 1, n), np.full(n, 1000.0),
             np.full(n, 42, dtype=np.int64))
    assert sorted(st.h_n[:5].tolist()) == [0, 0, 0, 0, n]


def test_summary_figures_are_consistent():
    scenario = make_scenario(rate=20.0, replicas=3, concurrency=2, duration=1200)
    s = simulate(scenario).summary
    assert s.replica_hours == pytest.approx(3 * 1200 / 3600)
    assert s.cost == pytest.approx(s.replica_hours * scenario.cost.replica_hour)
    assert s.latency_p50 <= s.latency_p95 <= s.latency_p99 <= s.latency_p999
    assert 0.0 <= s.slo_attainment <= 1.0
    utilization = 20.0 * 0.1 / (3 * 2)
    assert s.mean_utilization == pytest.approx(utilization, rel=0.05)


def test_weighted_round_robin_restores_full_weight_after_warm_up():
    """A warming replica (2x slower) gets half weight, and its full weight back once warm."""
    st = DataPlaneState(balancer="weighted_round_robin", slots=4, queue_limit=10_000, timeout=None, buffer_limit=10,
                        buffer_timeout=None, hash_vnodes=10, slowdown=2.0, slo_latency=1.0, capacity=4)
    st.reset_slot(0, uid=0, ready_at=0.0, warm_until=0.0, crash_at=math.inf)
    st.reset_slot(1, uid=1, ready_at=0.0, warm_until=5.0, crash_at=math.inf)
    cand = np.arange(2, dtype=np.int64)
    shares = []
    for t0 in (0.0, 5.0):
        times = np.arange(t0, t0 + 5.0, 0.01)
        st.serve(t0, t0 + 5.0, cand, times, np.full(len(times), 0.001), np.zeros(len(times), dtype=np.int64))
        warm_factor = 2.0 if t0 < 5.0 else 1.0   # replica 1's requests take twice as long while warming
        shares.append(st.busy[1] / warm_factor / (st.busy[0] + st.busy[1] / warm_factor))
    assert shares[0] == pytest.approx(1 / 3, abs=0.01)
    assert shares[1] == pytest.approx(1 / 2, abs=0.01)


def test_weighted_round_robin_notices_many_weights_restored_at_once():
    """14 replicas leave warm-up together: the order is rebuilt for all 15 at full weight."""
    st = DataPlaneState(balancer="weighted_round_robin", slots=4, queue_limit=10_000, timeout=None, buffer_limit=10,
                        buffer_timeout=None, hash_vnodes=10, slowdown=2.0, slo_latency=1.0, capacity=16)
    for r in range(14):
        st.reset_slot(r, uid=r, ready_at=0.0, warm_until=5.0, crash_at=math.inf)
    st.reset_slot(14, uid=14, ready_at=0.0, warm_until=0.0, crash_at=math.inf)
    cand = np.arange(15, dtype=np.int64)
    for t0 in (0.0, 5.0):
        times = np.arange(t0, t0 + 5.0, 0.001)
        st.serve(t0, t0 + 5.0, cand, times, np.full(len(times), 0.0001), np.zeros(len(times), dtype=np.int64))
    assert st.busy[14] / st.busy[cand].sum() == pytest.approx(1 / 15, abs=0.005)
