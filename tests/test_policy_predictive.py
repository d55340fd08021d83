"""The ``predictive`` policy: config validation, sizing on synthetic observations, resumable state,
and an end-to-end diurnal run against ``target_utilization`` in the simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import tidal.policy.predictive as predictive  # registers "predictive"
from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import available_policies, build_policy, validate_policy_block
from tidal.policy.predictive import PredictiveConfig, PredictivePolicy
from tidal.sim import simulate

REPO = Path(__file__).resolve().parents[1]
FIXED = {"concurrency": 4, "service_time": "100ms"}  # 40 req/s per fully busy replica


def _policy(**params) -> PredictivePolicy:
    policy = build_policy({"name": "predictive", **params})
    assert isinstance(policy, PredictivePolicy)
    return policy


class Feed:
    """Scrapes synthetic metrics into a history and builds the observation at each sync."""

    def __init__(self, replicas: int = 4, pods=()) -> None:
        self.history = MetricsHistory()
        self.replicas = replicas
        self.pods = tuple(pods)

    def obs(self, t: float) -> Observation:
        return Observation(time=t, replicas=self.replicas, ready=self.replicas, starting=0, pods=self.pods,
                           metrics=self.history.view(t))

    def scrape(self, t: float, rps: float, capacity: float = 40.0) -> None:
        """Record rps with the utilisation a replica of ``capacity`` req/s would show."""
        util = rps / (capacity * self.replicas) if self.replicas else 0.0
        self.history.record(t, {"rps": rps, "utilization": util, "ready_replicas": float(self.replicas)})

    def run(self, policy, rates, period: float = 15.0, start: float = 15.0, follow: bool = False):
        """Scrape ``rates`` one per period and decide after each; return the decisions."""
        out = []
        for k, rate in enumerate(rates):
            t = start + k * period
            self.scrape(t, rate)
            decision = policy.decide(self.obs(t))
            if follow:
                self.replicas = max(decision.replicas, 1)
            out.append(decision)
        return out


# --------------------------------------------------------------------------- registry and config


def test_registered_with_its_config():
    entry = available_policies()["predictive"]
    assert entry.config_model is PredictiveConfig


def test_defaults():
    cfg = PredictiveConfig()
    assert cfg.metric == "rps" and cfg.horizon == "auto" and cfg.quantile == 0.9
    assert cfg.target_utilization == 0.7 and cfg.error == "absolute"
    assert cfg.forecaster.kind == "holt" and cfg.forecaster.step == 60.0


@pytest.mark.parametrize("params, where", [
    ({"horizon": "-5s"}, "policy.horizon"),
    ({"horizon": 0}, "policy.horizon"),
    ({"horizon": "soon"}, "policy.horizon"),
    ({"horizon": "10s", "sync_period_hint": "15s"}, "policy.horizon"),
    ({"sync_period_hint": 0}, "policy.sync_period_hint"),
    ({"quantile": 1.0}, "policy.quantile"),
    ({"quantile": 0}, "policy.quantile"),
    ({"target_utilization": 0}, "policy.target_utilization"),
    ({"target_utilization": 1.2}, "policy.target_utilization"),
    ({"service_time": "100ms"}, "policy.service_time"),
    ({"concurrency": 0, "service_time": "1s"}, "policy.concurrency"),
    ({"service_time": "-1s", "concurrency": 2}, "policy.service_time"),
    ({"metric": "latency_p99"}, "policy.metric"),
    ({"cold_start": "-30s"}, "policy.cold_start"),
    ({"actuation_delay": "-1s"}, "policy.actuation_delay"),
    ({"error_window": 0}, "policy.error_window"),
    ({"error": "squared"}, "policy.error"),
    ({"min_error_samples": 0}, "policy.min_error_samples"),
    ({"capacity_window": "0s"}, "policy.capacity_window"),
    ({"forecaster": {"kind": "arima"}}, "policy.forecaster"),
    ({"forecaster": {"kind": "holt", "alpha": 0}}, "policy.forecaster.holt.alpha"),
    ({"forecaster": {"kind": "holt", "beta": 1.5}}, "policy.forecaster.holt.beta"),
    ({"forecaster": {"kind": "ewma", "step": "-1m"}}, "policy.forecaster.ewma.step"),
    ({"forecaster": {"kind": "holt_winters", "season": "90s"}}, "policy.forecaster.holt_winters.season"),
    ({"forecaster": {"kind": "holt_winters", "season": "1h", "gamma": -0.1}}, "policy.forecaster.holt_winters.gamma"),
    ({"forecaster": {"kind": "holt_winters", "season": "4m", "initial_level": 1, "initial_seasonal": [0, 0]}},
     "policy.forecaster.holt_winters"),
    ({"forecaster": {"kind": "seasonal_naive", "season": "100s"}}, "policy.forecaster.seasonal_naive.season"),
    ({"forecaster": {"kind": "linear", "window": "60s"}}, "policy.forecaster.linear.window"),
    ({"forecaster": {"kind": "holt", "initial_level": 10}}, "policy.forecaster.holt"),
    ({"horizon_s": 60}, "policy.horizon_s"),
])
def test_bad_parameters_name_the_field(params, where):
    with pytest.raises(TidalInputError) as info:
        validate_policy_block({"name": "predictive", **params})
    assert info.value.where == where


def test_horizon_accepts_auto_and_durations():
    assert PredictiveConfig(horizon="auto").horizon == "auto"
    assert PredictiveConfig.model_validate({"horizon": "2m"}).horizon == 120.0
    assert PredictiveConfig.model_validate({"horizon": 45}).horizon == 45.0


def test_example_scenario_validates():
    from tidal.config import load_scenario

    scenario = load_scenario(REPO / "examples" / "predictive_diurnal.yaml")
    name, config, _ = validate_policy_block(scenario.policy)
    assert name == "predictive" and config.forecaster.kind == "holt_winters"


# --------------------------------------------------------------------------- sizing


def test_sizes_from_forecast_margin_and_capacity():
    # 100 req/s flat; capacity 40/replica at 50 % target -> 5 replicas, 6 with a 10 % margin.
    assert Feed().run(_policy(**FIXED, target_utilization=0.5, initial_margin=0.0), [100.0] * 12)[-1].replicas == 5
    assert Feed().run(_policy(**FIXED, target_utilization=0.5), [100.0] * 12)[-1].replicas == 6


def test_holds_until_a_bucket_is_complete():
    feed = Feed(replicas=3)
    decisions = feed.run(_policy(**FIXED), [100.0, 100.0, 100.0])  # t = 15, 30, 45 < 60
    assert [d.replicas for d in decisions] == [3, 3, 3]
    assert "hold" in decisions[0].reason


def test_scales_ahead_of_a_ramp():
    """On a ramp the policy asks now for what the rate will be one horizon later."""
    ramp = [40.0 + 1.0 * 15 * k for k in range(60)]  # +1 req/s every second
    params = dict(**FIXED, target_utilization=1.0, initial_margin=0.0, horizon="3m",
                  forecaster={"kind": "linear", "window": "5m"})
    decisions = Feed().run(_policy(**params), ramp)
    t = 15.0 * 60
    now = math.ceil((40.0 + (t - 15)) / 40.0)
    ahead = decisions[-1].replicas
    # Buckets hold means, so the line is about half a step behind; three minutes ahead is
    # still well above what the present rate needs.
    assert ahead >= math.ceil((40.0 + (t - 15) + 150) / 40.0) > now


def test_never_plans_below_the_present_load():
    """A forecast that dives (a trend extrapolated past a peak) does not shed needed replicas."""
    rates = [400.0 - 20.0 * k for k in range(16)] + [100.0] * 4
    decisions = Feed().run(_policy(**FIXED, target_utilization=1.0, initial_margin=0.0, horizon="10m"), rates)
    assert decisions[-1].replicas >= math.ceil(100.0 / 40.0)


def test_present_load_is_the_last_sync_period_not_the_whole_step():
    """A surge shows within one sync period even when the forecaster's step is 5 minutes."""
    params = dict(**FIXED, target_utilization=1.0, initial_margin=0.0,
                  forecaster={"kind": "ewma", "alpha": 1.0, "step": "5m"})
    decisions = Feed().run(_policy(**params), [100.0] * 30 + [400.0])  # past the first 5-minute bucket
    assert decisions[-1].replicas >= math.ceil(400.0 / 40.0)


def test_margin_is_the_error_quantile():
    """EWMA with alpha=1 forecasts the last bucket; rates alternating 100/140 make errors ±40."""
    params = dict(concurrency=1, service_time=1.0, target_utilization=1.0, quantile=0.9, horizon="60s",
                  min_error_samples=4, forecaster={"kind": "ewma", "alpha": 1.0, "step": "60s"})
    policy = _policy(**params)
    rates = [100.0, 140.0] * 6
    decisions = Feed().run(policy, rates, period=60.0, start=60.0)
    errors = policy.errors.errors()
    assert len(errors) == 11 and set(np.abs(errors)) == {40.0}
    margin = float(np.quantile(errors, 0.9))
    assert margin == pytest.approx(40.0)
    assert decisions[-1].replicas == math.ceil(140.0 + margin)
    assert decisions[1].replicas == math.ceil(140.0 * 1.1)  # initial margin before 4 errors


def test_relative_margin_scales_with_the_forecast():
    params = dict(concurrency=1, service_time=1.0, target_utilization=1.0, horizon="60s", error="relative",
                  min_error_samples=4, forecaster={"kind": "ewma", "alpha": 1.0, "step": "60s"})
    policy = _policy(**params)
    decisions = Feed().run(policy, [100.0, 125.0] * 6, period=60.0, start=60.0)
    q = float(np.quantile(policy.errors.errors(), 0.9))
    assert q == pytest.approx(0.25, abs=0.03)
    assert decisions[-1].replicas == math.ceil(125.0 * (1 + q) - 1e-9)


def test_max_margin_caps_the_margin():
    params = dict(concurrency=1, service_time=1.0, target_utilization=1.0, horizon="60s", max_margin=0.1,
                  min_error_samples=2, forecaster={"kind": "ewma", "alpha": 1.0, "step": "60s"})
    decisions = Feed().run(_policy(**params), [100.0, 300.0] * 4, period=60.0, start=60.0)
    assert decisions[-1].replicas == math.ceil(300.0 * 1.1)


def test_capacity_is_estimated_online_from_utilisation():
    policy = _policy(target_utilization=0.5, initial_margin=0.0)
    feed = Feed(replicas=5)
    decisions = feed.run(policy, [100.0] * 12)
    assert policy.capacity(feed.obs(180.0)) == pytest.approx(40.0)
    assert decisions[-1].replicas == 5  # 100 / (40 x 0.5)


def test_saturated_samples_do_not_inflate_capacity():
    policy = _policy(target_utilization=0.5)
    feed = Feed(replicas=2)
    feed.history.record(15.0, {"rps": 50.0, "utilization": 0.625, "ready_replicas": 2.0})  # 40/replica
    feed.history.record(30.0, {"rps": 300.0, "utilization": 1.0, "ready_replicas": 2.0})  # overloaded
    assert policy.capacity(feed.obs(30.0)) == pytest.approx(40.0)


def test_no_capacity_estimate_holds_or_scales_from_zero():
    policy = _policy()
    feed = Feed(replicas=0)
    for t in (15.0, 30.0, 45.0, 60.0):
        feed.history.record(t, {"rps": 5.0, "utilization": 0.0, "ready_replicas": 0.0})
    assert policy.decide(feed.obs(60.0)).replicas == 1
    idle = Feed(replicas=3)
    for t in (15.0, 30.0, 45.0, 60.0):
        idle.history.record(t, {"rps": 0.0, "utilization": 0.0, "ready_replicas": 3.0})
    assert _policy().decide(idle.obs(60.0)).replicas == 3


def test_auto_horizon_learns_cold_start_and_sync_period():
    pods = [PodSample(id=1, ready=True, started_at=0.0, ready_at=0.0, in_flight=0),
            PodSample(id=2, ready=True, started_at=100.0, ready_at=190.0, in_flight=0),
            PodSample(id=3, ready=False, started_at=200.0, ready_at=None, in_flight=0)]
    policy = _policy(**FIXED, actuation_delay="5s")
    feed = Feed(pods=pods)
    feed.run(policy, [100.0] * 4)  # decisions at 15..60 s
    assert policy.learned_cold_start() == 90.0
    assert policy.horizon_s() == 90.0 + 5.0 + 15.0
    # A pod still starting after 120 s proves the start-up is at least that long.
    feed.run(policy, [100.0] * 2, start=320.0)
    assert policy.learned_cold_start() == pytest.approx(335.0 - 200.0)
    assert _policy(**FIXED, cold_start="30s", sync_period_hint="10s").horizon_s() == 40.0


def test_a_horizon_shorter_than_the_sync_period_is_an_error_at_run_time():
    policy = _policy(**FIXED, horizon="10s")
    with pytest.raises(TidalInputError) as info:
        Feed().run(policy, [100.0] * 5)
    assert info.value.where == "policy.horizon"
    assert "sync period (15s)" in str(info.value)


def test_state_round_trip_resumes_identically():
    rng = np.random.default_rng(4)
    rates = 200 + 100 * np.sin(np.arange(120) / 10.0) + rng.normal(0, 5, 120)
    params = dict(min_error_samples=3, forecaster={"kind": "holt_winters", "season": "10m", "beta": 0.1})
    a, b = _policy(**params), _policy(**params)
    feed_a, feed_b = Feed(), Feed()
    first = feed_a.run(a, rates[:50], follow=True)
    feed_b.run(b, rates[:50], follow=True)
    state = json.loads(json.dumps(a.state_dict()))
    c = _policy(**params)
    c.load_state_dict(state)
    assert c.state_dict() == state
    rest_a = feed_a.run(a, rates[50:], start=15.0 * 51, follow=True)
    rest_c = feed_b.run(c, rates[50:], start=15.0 * 51, follow=True)
    assert [d.replicas for d in rest_a] == [d.replicas for d in rest_c]
    assert [d.reason for d in rest_a] == [d.reason for d in rest_c]
    assert len(first) == 50 and len(a.errors) > 3


# --------------------------------------------------------------------------- end to end

PERIOD = 1800.0  # a compressed "day": the rise takes minutes, so a 60 s cold start matters
COLD_START = 60.0
CAPACITY = 40.0  # 4 slots / 100 ms


def _diurnal(policy: dict) -> dict:
    return {
        "seed": 3,
        "duration": 3 * PERIOD,
        "workload": {"kind": "diurnal", "trough": 20, "peak": 400, "period": PERIOD, "peak_at": PERIOD / 2},
        "service": {"service_time": {"distribution": "lognormal", "mean": 0.1, "cv": 0.5}, "concurrency": 4,
                    "queue_limit": 1000, "timeout": 10, "cold_start": COLD_START},
        "replicas": {"min": 1, "max": 100, "initial": 2},
        "control": {"sync_period": 15},
        "slo": {"latency": 0.5, "target": 0.99},
        "policy": policy,
    }


def _rate(t: np.ndarray) -> np.ndarray:
    return 20 + 380 * (1 - np.cos(2 * np.pi * t / PERIOD)) / 2


def _lead(result) -> float:
    """Worst ratio, on rising flanks after the first cycle, of the capacity requested at ``t`` to
    the load one cold start later: >= 1 means replicas were asked for before the load came."""
    t = np.asarray(result.ticks["time"])
    spec = np.asarray(result.ticks["spec"])
    rising = (t >= PERIOD) & ((t % PERIOD) < PERIOD / 2)
    return float(np.min(spec[rising] * CAPACITY / _rate(t[rising] + COLD_START)))


@pytest.fixture(scope="module")
def diurnal_runs():
    return {
        "predictive": simulate(scenario_from_dict(_diurnal({"name": "predictive"}))),
        "reactive": simulate(scenario_from_dict(_diurnal(
            {"name": "target_utilization", "target": 0.6, "stabilization": {"down_window": "5m"}}))),
    }


def test_predictive_scales_up_before_the_load_rises(diurnal_runs):
    predictive_lead = _lead(diurnal_runs["predictive"])
    reactive_lead = _lead(diurnal_runs["reactive"])
    assert predictive_lead >= 1.2  # asked for the load of t + cold start, with room to spare
    assert predictive_lead > reactive_lead


def test_predictive_meets_the_slo_with_comparable_replica_hours(diurnal_runs):
    p = diurnal_runs["predictive"].summary
    r = diurnal_runs["reactive"].summary
    assert p.slo_met and p.drops == 0
    assert p.slo_attainment >= r.slo_attainment
    assert p.replica_hours <= 1.1 * r.replica_hours


def test_example_file_runs_from_yaml():
    data = yaml.safe_load((REPO / "examples" / "predictive_diurnal.yaml").read_text())
    data["duration"] = "20m"  # a smoke run of the shipped example
    result = simulate(scenario_from_dict(data))
    assert result.summary.arrivals > 0 and result.summary.policy.startswith("predictive")


def test_module_exposes_its_config():
    assert predictive.PredictiveConfig is PredictiveConfig
