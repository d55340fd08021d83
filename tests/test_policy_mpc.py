"""The ``mpc`` policy: forecasters, the planning problem, DP against brute force and HiGHS."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import tidal.policy.mpc as mpc
from test_policy_queueing import feed, observe
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import build_policy
from tidal.policy.mpc import PlanCosts, solve_dp, solve_milp
from tidal.queueing.latency import response_tail_grid
from tidal.queueing.service import service_time

# --------------------------------------------------------------------------- forecasters


def test_linear_trend_extrapolates_a_line_and_anchors_at_the_recent_level():
    t = np.arange(0.0, 120.0, 15.0)
    at = np.array([150.0, 300.0])
    assert mpc.linear_trend(t, 10.0 + 0.5 * t, at, 15.0) == pytest.approx(10.0 + 0.5 * at)
    step = np.where(t < 90, 50.0, 150.0)  # a step: the level is the recent samples', not the window mean
    forecast = mpc.linear_trend(t, step, at, 30.0)
    assert forecast[0] >= 150.0
    assert mpc.linear_trend(t, 100.0 - t, np.array([1e4]), 15.0)[0] == 0.0  # never negative
    assert mpc.linear_trend(np.array([5.0]), np.array([7.0]), at, 15.0) == pytest.approx([7.0, 7.0])
    assert mpc.last_value(t, step, at, 30.0) == pytest.approx([150.0, 150.0])
    assert mpc.window_mean(t, step, at, 30.0) == pytest.approx([step.mean()] * 2)
    with pytest.raises(ValueError, match="twice"):
        mpc.register_forecaster("linear_trend")(mpc.last_value)


# --------------------------------------------------------------------------- the solver


def brute_force(problem: PlanCosts) -> float:
    h = problem.stage.shape[0]
    return min(problem.total(plan) for plan in itertools.product(problem.levels.tolist(), repeat=h))


def random_problem(rng: np.random.Generator) -> PlanCosts:
    lo = int(rng.integers(0, 3))
    n = int(rng.integers(2, 6))
    h = int(rng.integers(1, 5))
    levels = np.arange(lo, lo + n)
    stage = rng.uniform(0, 10, size=(h, n))
    return PlanCosts(
        levels=levels,
        stage=stage,
        start=int(rng.integers(lo, lo + n)),
        change_cost=float(rng.choice([0.0, 0.5, 3.0])),
        max_up=None if rng.random() < 0.3 else int(rng.integers(1, 3)),
        max_down=None if rng.random() < 0.3 else int(rng.integers(1, 3)),
    )


@pytest.mark.parametrize("seed", range(40))
def test_dp_equals_brute_force(seed):
    problem = random_problem(np.random.default_rng(seed))
    plan = solve_dp(problem)
    assert plan.cost == pytest.approx(brute_force(problem), abs=1e-9)
    assert problem.total(plan.replicas) == pytest.approx(plan.cost, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_milp_agrees_with_dp(seed):
    problem = random_problem(np.random.default_rng(100 + seed))
    assert solve_milp(problem).cost == pytest.approx(solve_dp(problem).cost, abs=1e-6)


def test_dp_breaks_ties_low_and_reports_infeasible_ramps():
    flat = PlanCosts(np.arange(0, 4), np.zeros((3, 4)), start=2)
    assert solve_dp(flat).replicas == (0, 0, 0)
    stuck = PlanCosts(np.arange(5, 7), np.zeros((1, 2)), start=5, max_up=1)
    assert solve_dp(stuck).replicas == (5,)
    assert PlanCosts(np.arange(0, 4), np.zeros((1, 4)), start=0, max_up=1).total([3]) == math.inf


def small_policy(**overrides):
    block = {"name": "mpc", "service_time": "100ms", "step": "15s", "horizon": "45s", "cold_start": "15s",
             "max_replicas": 6, "replica_cost": 1.0, "shortfall_cost": 4.0, "change_cost": 0.02,
             "max_step_up": 2, "max_step_down": 1, **overrides}
    return build_policy(block)


@pytest.mark.parametrize("slo_model, rates", [
    ("utilization", [10.0, 20.0, 30.0, 40.0]),
    ("utilization", [40.0, 5.0, 5.0, 60.0]),
    ("queueing", [10.0, 25.0, 30.0, 12.0]),
])
def test_policy_instance_equals_brute_force_over_its_own_model(slo_model, rates):
    """Build the instance a decision would, then check it against a direct enumeration of
    the model in the module docstring (cold start 1 step, billing from the request)."""
    p = small_policy(slo_model=slo_model, slo={"latency": "400ms", "percentile": 0.9},
                     miss_cost=0.01)
    s = service_time(0.1)
    rates = np.array(rates)
    base = np.array([3])
    problem = p.build(rates, s, slo_model, current=3, base=base, delay=1)
    hours = 15.0 / 3600.0

    def penalty(lam, n):
        if slo_model == "utilization":
            return 4.0 * max(lam * 0.1 / 0.7 - n, 0.0)
        miss = 1.0 if n == 0 else float(response_tail_grid([lam], [n], s, 0.4)[0, 0])
        return 0.01 * 3600.0 * lam * max(miss - 0.1, 0.0)

    best = math.inf
    for plan in itertools.product(range(0, 7), repeat=3):
        prev, total, ok = 3, 0.0, True
        for k, u in enumerate(plan):
            if not -1 <= u - prev <= 2:
                ok = False
                break
            total += (1.0 * u + penalty(rates[k + 1], u)) * hours + 0.02 * abs(u - prev)
            prev = u
        if ok:
            total += penalty(rates[0], min(3, plan[0])) * hours
            best = min(best, total)
    plan = solve_dp(problem)
    assert plan.cost == pytest.approx(best, rel=1e-9)


# --------------------------------------------------------------------------- the policy


def test_cold_start_makes_it_scale_ahead_of_a_ramp():
    """Rate rising 4/s every 15 s; capacity 10/s per replica at 100 %, 0.7 target. With a 60 s cold
    start the MPC asks now for what the load will need when the replicas arrive."""
    h = MetricsHistory()
    for k in range(1, 9):
        h.record(15.0 * k, {"rps": 20.0 + 4.0 * k, "utilization": 0.5, "ready_replicas": 8.0, "queue_length": 0.0})
    obs = observe(h, 120.0, 8)
    kwargs = dict(horizon="2m", max_replicas=40, max_step_up=None, max_step_down=None, change_cost=0.0)
    hot = small_policy(cold_start="60s", **kwargs).decide(obs)
    cold = small_policy(cold_start="0s", **kwargs).decide(obs)
    # Forecast for step j: 52 + 4 (j + 0.5) req/s; one replica carries 0.7 × 10 = 7 req/s.
    assert cold.replicas == 8  # step 0: 54/s needs 7.7 replicas
    assert hot.replicas == 10  # step 4, when a replica asked for now can serve: 70/s needs 10
    assert "cold start 4 steps" in hot.reason


def test_ramp_limits_and_bounds_hold():
    h = MetricsHistory()
    feed(h, 0, 30, rate=300.0, service=0.1, ready=2)
    d = small_policy(max_replicas=50).decide(observe(h, 30, 2))
    assert d.replicas == 4  # at most +2 per step
    d = small_policy(max_replicas=3).decide(observe(h, 30, 2))
    assert d.replicas == 3


def test_cold_start_is_learnt_from_pods():
    p = small_policy(cold_start=None)
    h = MetricsHistory()
    feed(h, 0, 60, rate=30.0, service=0.1, ready=5)
    pods = [PodSample(id=i, ready=True, started_at=0.0, ready_at=0.0 if i < 4 else 45.0, in_flight=0)
            for i in range(5)]
    pods += [PodSample(id=9, ready=False, started_at=50.0, ready_at=None, in_flight=0)]
    obs = Observation(time=60.0, replicas=6, ready=5, starting=1, pods=pods, metrics=h.view(60.0))
    d = p.decide(obs)
    assert p.cold_start_seen == 45.0
    assert "cold start 3 steps" in d.reason
    base = p._base(obs, 3)
    assert base.tolist() == [5, 5, 5]  # the starting pod is ready only at 95 s, after step 2 begins


def test_queueing_model_and_infeasible_estimate():
    h = MetricsHistory()
    feed(h, 0, 60, rate=100.0, service=0.05, ready=10)
    p = build_policy({"name": "mpc", "slo_model": "queueing", "slo": {"latency": "300ms"}, "horizon": "1m"})
    d = p.decide(observe(h, 60, 10))
    assert 7 <= d.replicas <= 8 and "infeasible" not in d.reason
    tight = build_policy({"name": "mpc", "slo_model": "queueing", "slo": {"latency": "100ms"}, "horizon": "1m"})
    d = tight.decide(observe(h, 60, 10))
    assert "infeasible" in d.reason and d.replicas >= 1


def test_hold_without_metrics_or_estimate():
    p = build_policy({"name": "mpc"})
    assert p.decide(observe(MetricsHistory(), 0, 3)).replicas == 3
    h = MetricsHistory()
    h.record(10, {"rps": 5.0, "ready_replicas": 0.0})
    assert p.decide(observe(h, 10, 0)).replicas == 1  # scale from zero before E[S] is known


def test_milp_solver_option_matches_dp():
    h = MetricsHistory()
    for k in range(1, 9):
        h.record(15.0 * k, {"rps": 20.0 + 4.0 * k, "utilization": 0.5, "ready_replicas": 8.0, "queue_length": 0.0})
    obs = observe(h, 120.0, 8)
    dp = small_policy(max_replicas=20)
    hi = small_policy(max_replicas=20, solver="milp")
    assert hi.decide(obs).replicas == dp.decide(obs).replicas


@pytest.mark.parametrize("block, where", [
    ({"horizon": "10s"}, "policy.horizon"),
    ({"step": "30s", "horizon": "29s"}, "policy.horizon"),
    ({"step": "1s", "horizon": "2h"}, "policy.horizon"),
    ({"step": "0s"}, "policy.step"),
    ({"forecaster": "prophet"}, "policy.forecaster"),
    ({"replica_cost": -1}, "policy.replica_cost"),
    ({"change_cost": -0.1}, "policy.change_cost"),
    ({"max_step_up": 0}, "policy.max_step_up"),
    ({"min_replicas": 5, "max_replicas": 2}, "policy.max_replicas"),
    ({"slo_model": "queueing", "service_time": "50ms", "slo": {"latency": "100ms"}}, "policy.slo"),
    ({"slo_model": "queueing", "slo": {"mean": "100ms"}}, "policy.slo"),
    ({"cold_start": "-5s"}, "policy.cold_start"),
    ({"solver": "cplex"}, "policy.solver"),
])
def test_bad_parameters_name_the_field(block, where):
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "mpc", **block})
    assert str(info.value).startswith(where + ":"), str(info.value)


def test_state_dict_round_trip():
    block = {"name": "mpc", "horizon": "1m", "rate_half_life": "30s"}
    a, b = build_policy(block), build_policy(block)
    h = MetricsHistory()
    n, t, queue = 5, 0.0, 0.0
    pods = [PodSample(id=0, ready=True, started_at=0.0, ready_at=30.0, in_flight=0)]
    for k, rate in enumerate([40, 60, 90, 70, 50, 80]):
        queue = feed(h, t, t + 15, rate=float(rate), service=0.05, ready=n, queue=queue)
        t += 15
        obs = Observation(time=t, replicas=n, ready=n, starting=0, pods=pods, metrics=h.view(t))
        d = a.decide(obs)
        if k == 2:
            state = json.loads(json.dumps(a.state_dict()))
            b.load_state_dict(state)
        elif k > 2:
            assert b.decide(obs) == d
        n = d.replicas
    assert a.state_dict() == b.state_dict() and a.state_dict()["cold_start_seen"] == 30.0
