"""The SimPy reference model: exact against Lindley-type recursions, M/M/1 theory, balancers, autoscaling."""

from __future__ import annotations

import heapq
import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "simpy_model.py"
_spec = importlib.util.spec_from_file_location("simpy_model", _PATH)
assert _spec is not None and _spec.loader is not None
simpy_model = importlib.util.module_from_spec(_spec)
sys.modules["simpy_model"] = simpy_model
_spec.loader.exec_module(simpy_model)
run_simpy = simpy_model.run_simpy
poisson_workload = simpy_model.poisson_workload


def fcfs_multiserver_latencies(arrivals: np.ndarray, services: np.ndarray, c: int) -> np.ndarray:
    """Per-request (arrival order) response times of one FCFS c-server queue (Kiefer–Wolfowitz)."""
    free = [0.0] * c  # min-heap of the times each slot frees up
    out = np.empty_like(arrivals)
    for i, (a, s) in enumerate(zip(arrivals, services, strict=True)):
        start = max(a, heapq.heappop(free))
        heapq.heappush(free, start + s)
        out[i] = start + s - a
    return out


def batch_means_ci(x: np.ndarray, batches: int = 20) -> tuple[float, float]:
    """Mean and standard error from non-overlapping batch means (handles autocorrelation)."""
    means = np.array([b.mean() for b in np.array_split(x, batches)])
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(batches))


def test_mm1_mean_response_matches_theory() -> None:
    lam, mu, n = 0.8, 1.0, 20_000
    arrivals, services = poisson_workload(n, lam, 1.0 / mu, seed=1)
    out = run_simpy(arrivals, services, replicas=1, concurrency=1)
    assert out["completed"] == n
    # Discard a warm-up so the empty start does not bias the mean low.
    mean, se = batch_means_ci(out["latencies"][1000:])
    assert se < 0.5
    assert abs(mean - 1.0 / (mu - lam)) < 4 * se + 0.1, (mean, se)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_single_replica_is_exactly_fcfs(concurrency: int) -> None:
    arrivals, services = poisson_workload(3_000, 0.9 * concurrency, 1.0, seed=2)
    out = run_simpy(arrivals, services, replicas=1, concurrency=concurrency, balancer="random")
    expected = fcfs_multiserver_latencies(arrivals, services, concurrency)
    # completion order differs from arrival order, so compare the multisets
    np.testing.assert_allclose(np.sort(out["latencies"]), np.sort(expected), rtol=0, atol=1e-9)


def routed_fcfs_latencies(arrivals: np.ndarray, services: np.ndarray, replicas: int, c: int, balancer: str,
                          seed: int) -> np.ndarray:
    """Independent reference for a fixed pool: with FCFS per replica a request's departure is known
    the moment it is routed, so in-flight at time t is just the count of routed departures > t."""
    rng = random.Random(seed)
    free = [[0.0] * c for _ in range(replicas)]
    departures: list[list[float]] = [[] for _ in range(replicas)]

    def in_flight(r: int, t: float) -> int:
        departures[r] = [d for d in departures[r] if d > t]
        return len(departures[r])

    out = np.empty_like(arrivals)
    for i, (a, s) in enumerate(zip(arrivals, services, strict=True)):
        if balancer == "least_connections":
            loads = [in_flight(r, a) for r in range(replicas)]
            r = loads.index(min(loads))
        else:  # power_of_two
            first = rng.randrange(replicas)
            second = rng.randrange(replicas - 1)
            second += second >= first
            r = second if in_flight(second, a) < in_flight(first, a) else first
        start = max(a, heapq.heappop(free[r]))
        heapq.heappush(free[r], start + s)
        departures[r].append(start + s)
        out[i] = start + s - a
    return out


@pytest.mark.parametrize("balancer", ["least_connections", "power_of_two"])
def test_routing_matches_independent_reference(balancer: str) -> None:
    arrivals, services = poisson_workload(3_000, 5.0, 1.0, seed=10)
    out = run_simpy(arrivals, services, replicas=6, concurrency=2, balancer=balancer, seed=3)
    expected = routed_fcfs_latencies(arrivals, services, 6, 2, balancer, seed=3)
    np.testing.assert_allclose(np.sort(out["latencies"]), np.sort(expected), rtol=0, atol=1e-9)


@pytest.mark.parametrize("balancer", ["random", "round_robin", "least_connections", "power_of_two"])
def test_every_request_completes(balancer: str) -> None:
    arrivals, services = poisson_workload(5_000, 7.0, 1.0, seed=3)
    out = run_simpy(arrivals, services, replicas=5, concurrency=2, balancer=balancer, seed=4)
    assert out["completed"] == 5_000 and out["latencies"].shape == (5_000,)
    assert np.all(out["latencies"] >= 0)
    # no request can finish faster than its own service time
    assert np.sort(out["latencies"]).sum() >= services.sum() - 1e-6
    assert out["replica_timeline"] == [] and out["wall_s"] > 0


def test_round_robin_and_least_connections_on_a_paced_stream() -> None:
    # One arrival per second, 3.5 s jobs, 4 single-slot replicas: round robin sends each replica
    # every 4th job (4 s apart), least connections always finds an idle one: nobody waits.
    n = 400
    arrivals = np.arange(n, dtype=float)
    services = np.full(n, 3.5)
    for balancer in ("round_robin", "least_connections"):
        out = run_simpy(arrivals, services, replicas=4, concurrency=1, balancer=balancer)
        np.testing.assert_allclose(out["latencies"], 3.5)
    # 3 replicas cannot keep up with 3.5 s per job at 1 job/s: the queue grows
    out = run_simpy(arrivals, services, replicas=3, concurrency=1, balancer="round_robin")
    assert out["latencies"].max() > 50


def test_state_aware_balancers_beat_blind_ones() -> None:
    # Highly variable service (hyperexponential, cv ≈ 2) is where queue-aware routing pays.
    gen = np.random.default_rng(5)
    n, replicas = 30_000, 8
    arrivals = np.cumsum(gen.exponential(1.0 / (0.8 * replicas), n))
    services = np.where(gen.random(n) < 0.9, gen.exponential(0.5, n), gen.exponential(5.5, n))
    mean = {
        b: run_simpy(arrivals, services, replicas, 1, balancer=b, seed=6)["latencies"].mean()
        for b in ("random", "round_robin", "least_connections", "power_of_two")
    }
    assert mean["least_connections"] < mean["round_robin"] < mean["random"]
    assert mean["power_of_two"] < mean["random"]


def test_power_of_two_is_reproducible_by_seed() -> None:
    arrivals, services = poisson_workload(2_000, 6.0, 1.0, seed=7)
    a = run_simpy(arrivals, services, 8, 1, "power_of_two", seed=11)["latencies"]
    b = run_simpy(arrivals, services, 8, 1, "power_of_two", seed=11)["latencies"]
    c = run_simpy(arrivals, services, 8, 1, "power_of_two", seed=12)["latencies"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_autoscale_follows_a_step_in_load() -> None:
    gen = np.random.default_rng(8)
    low = np.cumsum(gen.exponential(1 / 2.0, 1_200))  # 2 req/s for ~600 s
    high = low[-1] + np.cumsum(gen.exponential(1 / 8.0, 9_600))  # then 8 req/s for ~1200 s
    arrivals = np.concatenate([low, high])
    services = gen.exponential(1.0, arrivals.size)
    step = low[-1]
    out = run_simpy(arrivals, services, replicas=4, concurrency=1, balancer="least_connections",
                    autoscale={"sync_period": 15.0, "target": 0.6, "cold_start": 30.0, "min": 1, "max": 50})
    assert out["completed"] == arrivals.size
    times = np.array([t for t, _ in out["replica_timeline"]])
    ready = np.array([r for _, r in out["replica_timeline"]])
    assert np.allclose(np.diff(times), 15.0)
    before = ready[(times > 200) & (times < step)]
    after = ready[(times > step + 300) & (times < high[-1])]
    # 2 req/s at target 0.6 needs ~3-4 replicas, 8 req/s ~13-14
    assert before.max() <= 7
    assert after.min() >= 10 and np.median(after) >= 12
    # cold start: nothing new is routable within 30 s of the first sync after the step
    first_sync_after = times[times > step][0]
    assert ready[(times > step) & (times < first_sync_after + 30.0)].max() <= ready[times < step][-1]


def test_autoscale_scales_in_when_idle() -> None:
    arrivals = np.cumsum(np.random.default_rng(9).exponential(1.0, 2_000))  # 1 req/s
    services = np.full(arrivals.size, 0.5)
    out = run_simpy(arrivals, services, replicas=20, concurrency=1, autoscale={"min": 2, "max": 20, "cold_start": 0.0})
    ready = [r for _, r in out["replica_timeline"]]
    assert ready[0] < 20 and min(ready) >= 2 and ready[-1] <= 3
    assert out["completed"] == arrivals.size


def test_input_validation() -> None:
    a, s = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    with pytest.raises(ValueError, match="balancer"):
        run_simpy(a, s, 2, 1, balancer="nope")
    with pytest.raises(ValueError, match="non-decreasing"):
        run_simpy(a[::-1], s, 2, 1)
    with pytest.raises(ValueError, match="unknown keys"):
        run_simpy(a, s, 2, 1, autoscale={"period": 5})
    assert run_simpy(np.array([]), np.array([]), 2, 1)["completed"] == 0
