"""The ``hybrid`` policy: predictive floor, reactive correction, fast up, slow and gradual down."""

from __future__ import annotations

import json
import math

import pytest

import tidal.policy.hybrid  # noqa: F401  (registers "hybrid")
from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation
from tidal.policy import available_policies, build_policy, validate_policy_block
from tidal.policy.hybrid import HybridConfig, HybridPolicy
from tidal.sim import simulate

# The floor's capacity is given (40 req/s per replica, planned at 50 %, no margin), so the floor is
# ceil(rps / 20) once a minute of data is in.
FLOOR = {"concurrency": 4, "service_time": "100ms", "target_utilization": 0.5, "initial_margin": 0.0,
         "forecaster": {"kind": "ewma", "alpha": 1.0}}


def _policy(**params) -> HybridPolicy:
    block = {"name": "hybrid", "predictive": FLOOR, **params}
    policy = build_policy(block)
    assert isinstance(policy, HybridPolicy)
    return policy


class Feed:
    """Synthetic scrapes every 15 s of a service whose replicas serve ``capacity`` req/s each."""

    def __init__(self, replicas: int, capacity: float = 40.0) -> None:
        self.history = MetricsHistory()
        self.replicas = replicas
        self.capacity = capacity

    def step(self, policy, t: float, rps: float) -> int:
        util = min(1.0, rps / (self.capacity * self.replicas))
        self.history.record(t, {"rps": rps, "utilization": util, "ready_replicas": float(self.replicas)})
        obs = Observation(time=t, replicas=self.replicas, ready=self.replicas, starting=0, pods=(),
                          metrics=self.history.view(t))
        self.replicas = policy.decide(obs).replicas
        return self.replicas


def test_registered_with_its_config():
    assert available_policies()["hybrid"].config_model is HybridConfig
    cfg = HybridConfig()
    assert cfg.reactive.target == 0.8 and cfg.scale_down_delay == 300.0 and cfg.scale_down_rate == 0.1


@pytest.mark.parametrize("params, where", [
    ({"scale_down_delay": "-1s"}, "policy.scale_down_delay"),
    ({"scale_down_rate": 0}, "policy.scale_down_rate"),
    ({"scale_down_rate": 1.5}, "policy.scale_down_rate"),
    ({"scale_down_period": 0}, "policy.scale_down_period"),
    ({"predictive": {"quantile": 2}}, "policy.predictive.quantile"),
    ({"predictive": {"horizon": "-1m"}}, "policy.predictive.horizon"),
    ({"reactive": {"target": 0}}, "policy.reactive.target"),
    ({"reactive": {"metric": "latency"}}, "policy.reactive.metric"),
    ({"floor": {}}, "policy.floor"),
])
def test_bad_parameters_name_the_field(params, where):
    with pytest.raises(TidalInputError) as info:
        validate_policy_block({"name": "hybrid", **params})
    assert info.value.where == where


def test_scales_up_at_once_to_the_predictive_floor():
    policy, feed = _policy(), Feed(replicas=2)
    for k in range(4):
        feed.step(policy, 15.0 * (k + 1), 40.0)  # the first bucket completes at 60 s
    assert feed.replicas == 2
    for k in range(4, 8):
        feed.step(policy, 15.0 * (k + 1), 200.0)
    assert feed.replicas == 10  # floor: 200 / 20; reached in one decision, no delay


def test_reactive_correction_catches_a_wrong_capacity():
    """The floor believes 80 req/s per replica; really 40: observed utilisation corrects it."""
    policy = _policy(predictive={**FLOOR, "service_time": "50ms"}, reactive={"target": 0.8, "window": "15s"})
    feed = Feed(replicas=5)
    decisions = [feed.step(policy, 15.0 * (k + 1), 200.0) for k in range(5)]
    # floor = ceil(200 / 40) = 5, but 5 replicas run at 100 % -> reactive ceil(5 x 1.0 / 0.8) = 7
    assert decisions[-1] >= 7


def test_scale_down_waits_for_the_delay_then_goes_at_the_limited_rate():
    policy = _policy(scale_down_delay="5m", scale_down_rate=0.1, scale_down_period="60s")
    feed = Feed(replicas=20)
    trace = []
    t = 0.0
    for k in range(120):
        t = 15.0 * (k + 1)
        rps = 400.0 if t <= 600 else 40.0  # floor 20 -> 2 after 600 s
        trace.append((t, feed.step(policy, t, rps)))
    first_down = next(t for t, r in trace if r < 20)
    # The floor drops when the first low bucket completes (660 s); it must persist 5 min.
    assert first_down >= 660 + 300
    # Never more than 10 % (at least one) of the replicas per minute: HPA's Percent rule.
    count = dict(trace)
    removed = [count[t - 60] - r for t, r in trace if t - 60 in count]
    allowed = [max(1, math.floor(0.1 * count[t - 60])) for t, _ in trace if t - 60 in count]
    assert all(n <= a for n, a in zip(removed, allowed, strict=True))
    assert max(removed) == 2  # 10 % of 20 in a minute, then 1 per minute below 20
    assert trace[-1][1] < 20
    assert all(r >= 2 for _, r in trace)


def test_a_brief_dip_does_not_shed_replicas():
    policy = _policy(scale_down_delay="5m")
    feed = Feed(replicas=10)
    for k in range(40):
        t = 15.0 * (k + 1)
        rps = 40.0 if 300 < t <= 420 else 200.0
        feed.step(policy, t, rps)
        assert feed.replicas >= 10


def test_state_round_trip_resumes_identically():
    rates = [200.0] * 30 + [40.0] * 30 + [300.0] * 10 + [60.0] * 40
    a, c = _policy(), _policy()
    feed_a, feed_c = Feed(10), Feed(10)
    for k, rps in enumerate(rates[:45]):
        feed_a.step(a, 15.0 * (k + 1), rps)
        feed_c.step(c, 15.0 * (k + 1), rps)
    b = _policy()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for k, rps in enumerate(rates[45:], start=45):
        assert feed_a.step(a, 15.0 * (k + 1), rps) == feed_c.step(b, 15.0 * (k + 1), rps)


def test_on_a_diurnal_with_cold_starts_it_meets_the_slo():
    period = 1800.0
    scenario = scenario_from_dict({
        "seed": 3,
        "duration": 2 * period,
        "workload": {"kind": "diurnal", "trough": 20, "peak": 400, "period": period, "peak_at": period / 2},
        "service": {"service_time": {"distribution": "lognormal", "mean": 0.1, "cv": 0.5}, "concurrency": 4,
                    "queue_limit": 1000, "timeout": 10, "cold_start": 60},
        "replicas": {"min": 1, "max": 100, "initial": 2},
        "control": {"sync_period": 15},
        "slo": {"latency": 0.5, "target": 0.99},
        "policy": {"name": "hybrid"},
    })
    summary = simulate(scenario).summary
    assert summary.slo_met and summary.drops == 0
    assert summary.policy.startswith("hybrid(predictive(holt")
    # Slow scale-down means fewer scale events than decisions would allow.
    assert summary.scale_downs < summary.scale_ups * 3
