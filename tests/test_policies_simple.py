"""The policy contract with the built-in policies and behaviours."""

from __future__ import annotations

import json

import pytest

from tidal.core.errors import TidalInputError
from tidal.core.types import Decision, MetricsHistory, Observation
from tidal.policy import Bounded, Stabilized, available_policies, build_policy
from tidal.policy.base import Policy


def _obs(t: float, replicas: int, utilization: float | None, history: MetricsHistory | None = None) -> Observation:
    history = history or MetricsHistory()
    if utilization is not None:
        history.record(t, {"utilization": utilization, "rps": 10.0, "concurrency": 3.0})
    return Observation(time=t, replicas=replicas, ready=replicas, starting=0, pods=(), metrics=history.view(t))


def test_registry_lists_builtins():
    assert {"static", "target_utilization"} <= set(available_policies())


def test_static():
    assert build_policy({"name": "static", "replicas": 7}).decide(_obs(0, 1, 0.5)).replicas == 7


def test_target_utilization_is_proportional():
    p = build_policy({"name": "target_utilization", "target": 0.5, "window": "15s"})
    assert p.decide(_obs(15, 4, 0.75)).replicas == 6
    assert p.decide(_obs(15, 4, 0.25)).replicas == 2
    assert p.decide(_obs(15, 4, None)).replicas == 4  # no metrics: hold


def test_target_utilization_window_zero_reads_the_latest_sample_at_wall_clock_times():
    p = build_policy({"name": "target_utilization", "target": 0.5, "window": 0})
    h = MetricsHistory()
    h.record(1_764_000_000.0, {"utilization": 0.25})
    h.record(1_764_000_015.0, {"utilization": 1.0})
    obs = Observation(time=1_764_000_015.0, replicas=4, ready=4, starting=0, pods=(), metrics=h.view(1_764_000_015.0))
    assert p.decide(obs).replicas == 8


def test_target_utilization_tolerance():
    p = build_policy({"name": "target_utilization", "target": 0.5, "tolerance": 0.1})
    assert p.decide(_obs(15, 4, 0.52)).replicas == 4


def test_scale_from_zero_when_traffic_waits():
    p = build_policy({"name": "target_utilization"})
    h = MetricsHistory()
    h.record(10, {"utilization": 0.0, "rps": 5.0, "concurrency": 5.0})
    obs = Observation(time=10, replicas=0, ready=0, starting=0, pods=(), metrics=h.view(10))
    assert p.decide(obs).replicas == 1


def test_bounded_wrapper():
    p = build_policy({"name": "static", "replicas": 50}, min_replicas=1, max_replicas=10)
    assert isinstance(p, Bounded)
    assert p.decide(_obs(0, 1, 0.5)).replicas == 10
    with pytest.raises(ValueError):
        Bounded(p, 5, 2)


class _Seq(Policy):
    def __init__(self, values):
        self.values = list(values)

    def decide(self, obs):
        return Decision(self.values.pop(0))


def test_stabilized_holds_scale_down_for_the_window_and_resumes_from_state():
    p = Stabilized(_Seq([10, 2, 2, 2, 2]), up_window_s=0, down_window_s=30)
    replicas = []
    current = 10
    for t in (0, 10, 20, 30, 40):
        current = p.decide(_obs(t, current, 0.5)).replicas
        replicas.append(current)
    assert replicas == [10, 10, 10, 10, 2]
    state = json.loads(json.dumps(p.state_dict()))
    q = Stabilized(_Seq([2]), up_window_s=0, down_window_s=30)
    q.load_state_dict(state)
    assert q.state_dict()["history"] == state["history"]


@pytest.mark.parametrize("block, where", [
    ({"name": "nope"}, "policy.name"),
    ({"replicas": 3}, "policy.name"),
    ({"name": "static", "replicas": -1}, "policy.replicas"),
    ({"name": "target_utilization", "target": 0}, "policy.target"),
    ({"name": "target_utilization", "targt": 0.5}, "policy.targt"),
    ({"name": "static", "replicas": 1, "stabilization": {"down_window": "-1s"}}, "policy.stabilization.down_window"),
])
def test_bad_policy_blocks(block, where):
    with pytest.raises(TidalInputError) as info:
        build_policy(block)
    assert str(info.value).startswith(where), str(info.value)


def test_metrics_window_applies_lag():
    h = MetricsHistory()
    for t in range(0, 100, 10):
        h.record(t, {"rps": float(t)})
    w = h.view(95, lag_s=20)
    assert w.last("rps") == 70.0
    assert w.mean("rps", 25) == pytest.approx((60 + 70) / 2)  # window (50, 75]
    assert w.last("missing") is None
