"""The simulator against queueing theory (fixed seeds; tolerances from replication CIs).

Each check runs independent replications and requires the theoretical value inside a 99.9 %
confidence interval widened by a small allowance for histogram resolution (< 1 %) and the
empty-system start.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import make_scenario, replicate
from tidal.queueing import md1, mm1, mmc
from tidal.sim import histogram, simulate

SEEDS = range(8)
ALLOWANCE = 0.015  # relative: bucket resolution + start-up transient


def _check(estimate: tuple[float, float], theory: float) -> None:
    mean, half = estimate
    assert abs(mean - theory) <= half + ALLOWANCE * theory, (mean, half, theory)


def _tail_fraction(hist: np.ndarray, t: float) -> float:
    return 1.0 - histogram.fraction_at_most(hist, t)


def test_mm1_mean_wait_and_response():
    lam, mu = 7.0, 10.0
    theory = mm1(lam, mu)
    results = {}

    def run(seed: int) -> float:
        r = simulate(make_scenario(rate=lam, service={"distribution": "exponential", "mean": 1 / mu},
                                   duration=6 * 3600, seed=seed))
        results[seed] = r
        return r.summary.latency_mean

    _check(replicate(run, SEEDS), theory.mean_response)
    _check(replicate(lambda s: results[s].summary.wait_mean, SEEDS), theory.mean_wait)


@pytest.mark.parametrize("layout", ["central_queue", "one_replica_four_slots"])
def test_mmc_erlang_c_wait_and_tail(layout):
    """M/M/4 two ways: a central queue over 4 single-slot replicas, and one 4-slot FCFS replica."""
    lam, mu, c = 30.0, 10.0, 4
    theory = mmc(lam, mu, c)
    if layout == "central_queue":
        kwargs = dict(replicas=c, concurrency=1, balancer="central_queue")
    else:
        kwargs = dict(replicas=1, concurrency=c, balancer="round_robin")
    results = {}

    def run(seed: int) -> float:
        r = simulate(make_scenario(rate=lam, service={"distribution": "exponential", "mean": 1 / mu},
                                   duration=2 * 3600, seed=seed, **kwargs))
        results[seed] = r
        return r.summary.wait_mean

    _check(replicate(run, SEEDS), theory.mean_wait)
    for t in (0.05, 0.2):
        mean, half = replicate(lambda s: _tail_fraction(results[s].wait_histogram, t), SEEDS)
        expected = float(theory.wait_tail(t))
        # Bucket resolution shifts t by < 1 %: allow the tail's change over that shift.
        slack = expected * (c * mu - lam) * t * 0.01
        assert abs(mean - expected) <= half + slack + 0.002, (t, mean, half, expected)
    # P(wait > 0) is Erlang C: waits below the histogram floor count as zero.
    mean, half = replicate(lambda s: _tail_fraction(results[s].wait_histogram, 1e-6), SEEDS)
    assert abs(mean - theory.p_wait) <= half + 0.005


def test_md1_pollaczek_khinchine():
    lam, d = 8.0, 0.1
    theory = md1(lam, d)
    _check(
        replicate(lambda s: simulate(make_scenario(rate=lam, service=d, duration=6 * 3600, seed=s)).summary.wait_mean,
                  SEEDS),
        theory.mean_wait,
    )


def test_random_routing_is_independent_mm1_queues():
    lam, mu, n = 28.0, 10.0, 4
    theory = mm1(lam / n, mu)
    _check(
        replicate(lambda s: simulate(make_scenario(rate=lam, service={"distribution": "exponential", "mean": 1 / mu},
                                                   replicas=n, balancer="random", duration=2 * 3600,
                                                   seed=s)).summary.latency_mean, SEEDS),
        theory.mean_response,
    )


def test_better_balancers_beat_random():
    """Join-shortest-queue style balancers wait less than random routing at the same load."""
    lam, mu, n = 32.0, 10.0, 4
    means = {}
    for balancer in ("random", "round_robin", "power_of_two", "least_connections", "central_queue"):
        means[balancer] = simulate(make_scenario(rate=lam, service={"distribution": "exponential", "mean": 1 / mu},
                                                 replicas=n, balancer=balancer, duration=3600,
                                                 seed=1)).summary.latency_mean
    assert means["central_queue"] < means["least_connections"] < means["power_of_two"] < means["random"]
    assert means["round_robin"] < means["random"]
    # The central queue is M/M/4.
    assert means["central_queue"] == pytest.approx(mmc(lam, mu, n).mean_response, rel=0.08)
    assert math.isfinite(means["random"])
