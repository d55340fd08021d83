"""The ``queueing`` policy and the models under it: service-time shapes, G/G/c latency, SLO sizing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import tidal.policy.queueing_policy as qp
from conftest import make_scenario
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation
from tidal.policy import build_policy
from tidal.queueing import mgc_allen_cunneen, min_servers_for_mean_response, mmc
from tidal.queueing.estimation import Ewma, service_time_from_load
from tidal.queueing.latency import ggc_response, mean_response_grid, response_tail_grid
from tidal.queueing.planning import (
    InfeasibleSLO,
    LatencySLO,
    check_feasible,
    evaluate_replicas,
    min_replicas_for_slo,
    plan_capacity,
)
from tidal.queueing.service import gamma_p, service_time
from tidal.sim import simulate

# --------------------------------------------------------------------------- synthetic metrics


def feed(history: MetricsHistory, t0: float, t1: float, *, rate: float, service: float, ready: int,
         concurrency: int = 1, queue: float = 0.0, dt: float = 1.0) -> float:
    """Record one scrape per ``dt`` in (t0, t1] as a fluid model of the fleet; returns the backlog.

    Utilization is the offered load over the slots, capped at 1; beyond that the backlog grows at
    arrivals minus capacity (what an overloaded fleet looks like to the metrics pipeline).
    """
    slots = ready * concurrency
    capacity = slots / service
    t = t0
    while t < t1 - 1e-9:
        t += dt
        served = min(rate + queue / dt, capacity)
        queue = max(queue + (rate - served) * dt, 0.0)
        history.record(t, {
            "rps": rate, "drops": 0.0, "utilization": min(served * service / slots, 1.0) if slots else 0.0,
            "ready_replicas": float(ready), "queue_length": queue, "concurrency": served * service + queue,
        })
    return queue


def observe(history: MetricsHistory, t: float, replicas: int, ready: int | None = None) -> Observation:
    ready = replicas if ready is None else ready
    return Observation(time=t, replicas=replicas, ready=ready, starting=replicas - ready, pods=(),
                       metrics=history.view(t))


def brute_force_mmc(lam: float, mu: float, slo: LatencySLO) -> int:
    c = math.floor(lam / mu) + 1
    while True:
        m = mmc(lam, mu, c)
        ok = m.mean_response <= slo.latency if slo.percentile is None else m.response_cdf(slo.latency) >= slo.percentile
        if ok:
            return c
        c += 1


# --------------------------------------------------------------------------- service-time shapes


@pytest.mark.parametrize("a", [0.1, 0.444, 1.0, 2.5, 11.1, 400.0])
def test_gamma_p_matches_scipy(a):
    x = np.concatenate([np.linspace(0, 5 * a + 5, 400), [1e-8, 1e3 * (a + 1)]])
    assert np.max(np.abs(gamma_p(a, x) - special.gammainc(a, x))) < 1e-12


@pytest.mark.parametrize("family, cv", [("gamma", 0.5), ("gamma", 1.5), ("lognormal", 0.7), ("lognormal", 2.0)])
def test_service_cdf_and_percentile_match_scipy(family, cv):
    mean = 0.05
    s = service_time(mean, cv, family)
    if family == "gamma":
        ref = stats.gamma(1 / cv**2, scale=mean * cv**2)
    else:
        sigma = math.sqrt(math.log1p(cv**2))
        ref = stats.lognorm(sigma, scale=mean / math.sqrt(1 + cv**2))
    t = np.linspace(0, 0.5, 101)
    assert np.max(np.abs(s.cdf(t) - ref.cdf(t))) < 1e-12
    assert s.percentile(0.99) == pytest.approx(ref.ppf(0.99), rel=1e-8)


def test_service_time_normalises_degenerate_shapes():
    assert service_time(0.1, 1.0).family == "exponential"
    assert service_time(0.1, 0.0, "lognormal").family == "deterministic"
    assert service_time(0.1, 1.0, "lognormal").family == "lognormal"
    with pytest.raises(ValueError, match="service_time"):
        service_time(0.0)
    with pytest.raises(ValueError, match="cv"):
        service_time(0.1, -1.0)


# --------------------------------------------------------------------------- G/G/c latency


def test_mmc_case_is_exact_bit_for_bit():
    s = service_time(0.05)
    for lam, c in [(120.0, 8), (7.0, 1), (950.0, 60)]:
        model = ggc_response(lam, s, c)
        exact = mmc(lam, 20.0, c)
        assert model.exact
        assert model.response_percentile(0.99) == exact.response_percentile(0.99)
        assert model.mean_response == exact.mean_response
        assert float(model.response_cdf(0.2)) == float(exact.response_cdf(0.2))


@pytest.mark.parametrize("cv, family", [(0.3, "gamma"), (1.5, "gamma"), (3.0, "gamma"), (1.5, "lognormal"), (0.0, "gamma")])
def test_ggc_response_cdf_is_the_stated_convolution(cv, family):
    """P(T <= t) = (1 - C) F_S(t) + C ∫ r e^{-rw} F_S(t - w) dw, checked by adaptive quadrature."""
    s = service_time(0.05, cv, family)
    m = ggc_response(120.0, s, 8, arrival_cv=1.2)
    assert not m.exact
    k = (1.2**2 + s.cv**2) / 2
    base = mmc(120.0, 20.0, 8)
    assert m.p_wait == pytest.approx(base.p_wait, rel=1e-12)
    assert m.wait_rate == pytest.approx(base.decay_rate / k, rel=1e-12)
    for t in (0.02, 0.05, 0.1, 0.2, 0.5):
        if s.family == "deterministic":
            conv = -math.expm1(-m.wait_rate * (t - 0.05)) if t >= 0.05 else 0.0
        else:
            conv = integrate.quad(lambda w: m.wait_rate * math.exp(-m.wait_rate * w) * float(s.cdf(t - w)), 0, t,
                                  limit=400, epsabs=1e-13, points=[max(t - 0.05, 0)])[0]
        ref = (1 - m.p_wait) * float(s.cdf(t)) + m.p_wait * conv
        assert float(m.response_cdf(t)) == pytest.approx(ref, abs=2e-5)


def test_ggc_mean_is_allen_cunneen():
    s = service_time(0.05, 1.7)
    m = ggc_response(150.0, s, 9, arrival_cv=0.8)
    assert m.mean_wait == pytest.approx(mgc_allen_cunneen(150.0, 0.05, 0.8, 1.7, 9).mean_wait, rel=1e-12)
    assert float(mean_response_grid([150.0], [9], s, 0.8)[0, 0]) == pytest.approx(m.mean_response, rel=1e-12)


def test_grids_agree_with_the_scalar_model():
    for s in (service_time(0.05), service_time(0.05, 1.5), service_time(0.05, 0.0)):
        rates = np.array([0.0, 30.0, 120.0, 170.0])
        servers = np.array([1, 3, 7, 8, 12])
        grid = response_tail_grid(rates, servers, s, 0.3)
        for i, lam in enumerate(rates):
            for j, c in enumerate(servers):
                if lam == 0:
                    expected = 1.0 - float(s.cdf(0.3))
                elif lam * s.mean / c >= 1:
                    expected = 1.0
                else:
                    expected = float(ggc_response(lam, s, int(c)).response_tail(0.3))
                assert grid[i, j] == pytest.approx(expected, abs=1e-12)


def test_unstable_load_raises():
    with pytest.raises(ValueError, match="unstable"):
        ggc_response(200.0, service_time(0.05), 10)


# --------------------------------------------------------------------------- sizing for an SLO


@pytest.mark.parametrize("lam, latency, p", [(120.0, 0.3, 0.99), (5.0, 0.5, 0.9), (900.0, 0.25, 0.95), (60.0, 0.4, 0.999)])
def test_min_replicas_matches_mmc_brute_force(lam, latency, p):
    slo = LatencySLO(latency, p)
    assert min_replicas_for_slo(lam, service_time(0.05), slo) == brute_force_mmc(lam, 20.0, slo)


def test_mean_slo_matches_existing_sizing():
    slo = LatencySLO(0.06, None)
    assert min_replicas_for_slo(120.0, service_time(0.05), slo) == min_servers_for_mean_response(120.0, 20.0, 0.06)


def test_concurrency_counts_slots_and_chosen_count_is_the_smallest():
    s = service_time(0.05, 1.5)
    slo = LatencySLO(0.5, 0.99)
    n = min_replicas_for_slo(400.0, s, slo, concurrency=4)
    assert evaluate_replicas(400.0, s, n, slo, concurrency=4).meets
    assert not evaluate_replicas(400.0, s, n - 1, slo, concurrency=4).meets
    assert evaluate_replicas(400.0, s, n, slo, concurrency=4).servers == 4 * n


def test_infeasible_slo_is_reported():
    with pytest.raises(InfeasibleSLO, match="infeasible"):
        check_feasible(service_time(0.05), LatencySLO(0.2, 0.99))  # Exp(50ms) p99 alone is 230ms
    with pytest.raises(InfeasibleSLO, match="mean"):
        check_feasible(service_time(0.05), LatencySLO(0.05, None))
    with pytest.raises(InfeasibleSLO) as info:
        min_replicas_for_slo(1e4, service_time(0.05), LatencySLO(0.3, 0.99), max_replicas=10)
    assert info.value.field == "max_replicas"
    assert min_replicas_for_slo(0.0, service_time(0.05), LatencySLO(0.3, 0.99)) == 0


def test_plan_capacity_table():
    plan = plan_capacity(120.0, service_time(0.05), LatencySLO(0.3, 0.99), replica_cost=2.5)
    assert plan.replicas == 8 and plan.exact
    assert [r.replicas for r in plan.rows] == [6, 7, 8, 9, 10, 11]
    assert [r.meets for r in plan.rows] == [False, False, True, True, True, True]
    assert not plan.rows[0].stable and math.isinf(plan.rows[0].p99)
    assert plan.best.cost_per_hour == 20.0
    assert plan.best.p99 == mmc(120.0, 20.0, 8).response_percentile(0.99)


# --------------------------------------------------------------------------- estimation helpers


def test_ewma_half_life_and_little():
    e = Ewma(10.0)
    e.update(0.0, 100.0)
    assert e.update(10.0, 0.0) == pytest.approx(50.0)
    assert e.update(30.0, 0.0) == pytest.approx(12.5)
    assert Ewma(0.0).update(5.0, 3.0) == 3.0
    assert service_time_from_load(100.0, 0.5, 4, 2) == pytest.approx(0.04)
    assert service_time_from_load(0.0, 0.5, 4, 2) is None


# --------------------------------------------------------------------------- the policy


def test_configured_service_time_sizes_exactly():
    p = build_policy({"name": "queueing", "service_time": "50ms", "slo": {"latency": "300ms", "percentile": 0.99}})
    h = MetricsHistory()
    feed(h, 0, 30, rate=120.0, service=0.05, ready=10)
    d = p.decide(observe(h, 30, 10))
    assert d.replicas == 8 and "p99 ≤ 300ms" in d.reason


def test_online_estimate_recovers_the_service_time_and_the_same_answer():
    p = build_policy({"name": "queueing", "slo": {"latency": "300ms"}, "concurrency": 2})
    h = MetricsHistory()
    feed(h, 0, 60, rate=120.0, service=0.05, ready=5, concurrency=2)
    d = p.decide(observe(h, 60, 5))
    est = p.estimator.service.value
    assert est == pytest.approx(0.05, rel=1e-9)
    expected = min_replicas_for_slo(120.0, service_time(0.05), LatencySLO(0.3, 0.99), concurrency=2)
    assert d.replicas == expected and "(est)" in d.reason


def test_overload_does_not_fool_the_service_estimate():
    """Saturated at 100 %: arrivals exceed completions; the backlog's growth is subtracted."""
    p = build_policy({"name": "queueing", "slo": {"latency": "300ms"}, "drain_time": 0})
    h = MetricsHistory()
    queue = feed(h, 0, 20, rate=60.0, service=0.05, ready=4)
    feed(h, 20, 40, rate=180.0, service=0.05, ready=4, queue=queue)  # capacity 80/s
    d = p.decide(observe(h, 40, 4))
    assert p.estimator.service.value == pytest.approx(0.05, rel=1e-9)
    assert d.replicas == brute_force_mmc(180.0, 20.0, LatencySLO(0.3, 0.99))


def test_backlog_adds_demand_until_drained():
    slo = {"latency": "300ms"}
    h = MetricsHistory()
    h.record(10, {"rps": 100.0, "utilization": 0.5, "ready_replicas": 10.0, "queue_length": 600.0})
    with_backlog = build_policy({"name": "queueing", "service_time": "50ms", "slo": slo, "drain_time": "30s"})
    without = build_policy({"name": "queueing", "service_time": "50ms", "slo": slo, "drain_time": 0})
    assert with_backlog.decide(observe(h, 10, 10)).replicas == brute_force_mmc(120.0, 20.0, LatencySLO(0.3, 0.99))
    assert without.decide(observe(h, 10, 10)).replicas == brute_force_mmc(100.0, 20.0, LatencySLO(0.3, 0.99))


def test_headroom_and_smoothing():
    h = MetricsHistory()
    feed(h, 0, 60, rate=200.0, service=0.05, ready=20)
    plain = build_policy({"name": "queueing", "service_time": "50ms", "rate_half_life": "60s", "drain_time": 0})
    roomy = build_policy({"name": "queueing", "service_time": "50ms", "headroom": 1.5})
    n200 = plain.decide(observe(h, 60, 20)).replicas
    assert roomy.decide(observe(h, 60, 20)).replicas == brute_force_mmc(300.0, 20.0, LatencySLO(0.5, 0.99))
    # A drop is followed at the EWMA's pace, a rise at once.
    feed(h, 60, 120, rate=50.0, service=0.05, ready=n200)
    smoothed = plain.estimator.rate.value
    d = plain.decide(observe(h, 120, n200))
    assert plain.estimator.rate.value == pytest.approx(0.5 * smoothed + 0.5 * 50.0)
    assert d.replicas == brute_force_mmc(125.0, 20.0, LatencySLO(0.5, 0.99))
    feed(h, 120, 135, rate=400.0, service=0.05, ready=n200)
    assert plain.decide(observe(h, 135, n200)).replicas == brute_force_mmc(400.0, 20.0, LatencySLO(0.5, 0.99))


def test_hold_idle_and_scale_from_zero():
    p = build_policy({"name": "queueing"})
    h = MetricsHistory()
    assert p.decide(observe(h, 0, 3)).reason.startswith("no metrics")
    h.record(10, {"rps": 5.0, "concurrency": 5.0, "ready_replicas": 0.0})
    d = p.decide(observe(h, 10, 0))
    assert d.replicas == 1 and "scale from zero" in d.reason
    for t in (20, 30):  # a whole window (15 s) without arrivals
        h.record(t, {"rps": 0.0, "concurrency": 0.0, "utilization": 0.0, "ready_replicas": 1.0})
    d = p.decide(observe(h, 30, 1))
    assert d.replicas == 0 and "idle" in d.reason


def test_infeasible_slo_with_estimated_service_time_says_so():
    p = build_policy({"name": "queueing", "slo": {"latency": "100ms", "percentile": 0.99}})
    h = MetricsHistory()
    feed(h, 0, 30, rate=100.0, service=0.05, ready=10)
    d = p.decide(observe(h, 30, 10))
    assert "infeasible" in d.reason
    assert d.replicas >= brute_force_mmc(100.0, 20.0, LatencySLO(0.3, 0.99))  # sized for 1.25 × Exp p99


@pytest.mark.parametrize("block, where, words", [
    ({"service_time": "50ms", "slo": {"latency": "100ms"}}, "policy.slo", "infeasible"),
    ({"service_time": "50ms", "slo": {"mean": "50ms"}}, "policy.slo", "infeasible"),
    ({"service_time": "2s"}, "policy.slo", "infeasible"),  # the default p99 ≤ 500ms
    ({"slo": {"latency": "1s", "mean": "1s"}}, "policy.slo", "either"),
    ({"slo": {"latency": "1s", "percentile": 1.0}}, "policy.slo.percentile", "less than 1"),
    ({"slo": {"latency": "-1s"}}, "policy.slo.latency", "greater than 0"),
    ({"headroom": 0.9}, "policy.headroom", "greater than or equal to 1"),
    ({"concurrency": 0}, "policy.concurrency", ""),
    ({"service_cv": -1}, "policy.service_cv", ""),
    ({"window": "0s"}, "policy.window", ""),
    ({"sevice_time": "1s"}, "policy.sevice_time", "unknown key"),
])
def test_bad_parameters_name_the_field(block, where, words):
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "queueing", **block})
    assert str(info.value).startswith(where) and words in str(info.value), str(info.value)


def test_state_dict_round_trip_resumes_identically():
    cfg = {"name": "queueing", "slo": {"latency": "400ms"}, "rate_half_life": "20s", "service_half_life": "60s"}
    a, b = build_policy(cfg), build_policy(cfg)
    assert isinstance(a, qp.QueueingPolicy)
    h = MetricsHistory()
    t, queue = 0.0, 0.0
    for i, rate in enumerate([80, 120, 200, 90, 60, 150]):
        queue = feed(h, t, t + 15, rate=float(rate), service=0.05 + 0.005 * i, ready=8, queue=queue)
        t += 15
        decision = a.decide(observe(h, t, 8))
        if i == 2:  # a restarted controller resumes from the snapshot
            state = json.loads(json.dumps(a.state_dict()))
            b.load_state_dict(state)
            assert b.state_dict() == state
        elif i > 2:
            assert b.decide(observe(h, t, 8)) == decision
    assert a.state_dict() == b.state_dict()
    assert a.state_dict()["estimator"]["service_time"]["value"] is not None


def test_meets_its_slo_in_the_simulator():
    """Constant Poisson load, exponential service, central queue (the model is exact there):
    from an over-provisioned start the policy learns E[S], settles near the M/M/c answer (8) and
    the SLO holds."""
    sc = make_scenario(rate=120, service={"distribution": "exponential", "mean": 0.05}, replicas=12,
                       balancer="central_queue", duration=900, seed=4, control={"sync_period": 15},
                       slo={"latency": 0.3, "target": 0.99})
    result = simulate(sc, build_policy({"name": "queueing", "slo": {"latency": "300ms"}}, 0, 100))
    assert result.summary.slo_attainment >= 0.99
    assert result.summary.latency_p99 <= 0.3
    assert 7.5 <= result.summary.mean_replicas <= 9.5
