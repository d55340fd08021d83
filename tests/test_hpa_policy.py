"""The ``hpa`` policy: config validation, Observation adapter, state, and a simulated scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tidal.policy.hpa  # noqa: F401  (registers "hpa")
from tidal.config import load_scenario
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import available_policies, build_policy
from tidal.policy.hpa import HPAConfig, HPAPolicy
from tidal.policy.hpa.adapter import ObservationSource
from tidal.policy.hpa.behavior import MAX, Behavior, ScalingPolicy, ScalingRules
from tidal.policy.hpa.quantity import parse_quantity
from tidal.sim import simulate

REPO = Path(__file__).resolve().parents[1]

CPU_60 = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]


def _hpa(**params) -> HPAPolicy:
    policy = build_policy({"name": "hpa", **params})
    assert isinstance(policy, HPAPolicy)
    return policy


def _pod(i: int, cpu: float | None, *, ready_at: float | None = 0.0, started_at: float = 0.0,
         in_flight: int = 0, draining: bool = False) -> PodSample:
    usage = {} if cpu is None else {"cpu": cpu}
    return PodSample(id=i, ready=ready_at is not None and not draining, started_at=started_at, ready_at=ready_at,
                     in_flight=in_flight, requests={"cpu": 1.0, "memory": 512.0}, usage=usage, draining=draining)


def _obs(t: float, replicas: int, pods: list[PodSample], history: MetricsHistory | None = None,
         **metrics: float) -> Observation:
    history = history or MetricsHistory()
    history.record(t, {"ready_replicas": float(sum(p.ready for p in pods)), **metrics})
    return Observation(time=t, replicas=replicas, ready=sum(p.ready for p in pods), starting=0, pods=pods,
                       metrics=history.view(t))


# --------------------------------------------------------------------------- config


def test_registered_with_kubernetes_defaults():
    assert "hpa" in available_policies()
    policy = _hpa()
    spec = policy.controller.spec
    assert [(m.type, m.name, m.target.average_utilization) for m in spec.metrics] == [("Resource", "cpu", 80)]
    assert spec.behavior is None and spec.min_replicas == 1  # the API server's default
    s = policy.controller.settings
    assert (s.tolerance, s.cpu_initialization_period, s.delay_of_initial_readiness_status,
            s.downscale_stabilization_window, s.scale_up_limit_factor) == (0.1, 300.0, 30.0, 300.0, 2.0)
    assert policy.describe() == "hpa(cpu 80%)"


def test_manifest_blocks_copied_verbatim():
    policy = _hpa(
        minReplicas=2, maxReplicas=50, tolerance=0.05, cpuInitializationPeriod="2m", initialReadinessDelay="10s",
        metrics=[
            *CPU_60,
            {"type": "ContainerResource",
             "containerResource": {"name": "memory", "container": "main",
                                   "target": {"type": "AverageValue", "averageValue": "400Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "concurrency"},
                                      "target": {"type": "AverageValue", "averageValue": "8"}}},
            {"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                                              "name": "main-route"},
                                          "metric": {"name": "rps"}, "target": {"type": "Value", "value": "2k"}}},
            {"type": "External", "external": {"metric": {"name": "queue_length",
                                                         "selector": {"matchLabels": {"queue": "worker"}}},
                                              "target": {"type": "AverageValue", "averageValue": "30"}}},
        ],
        behavior={
            "scaleDown": {"stabilizationWindowSeconds": 300, "tolerance": "50m",
                          "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15},
                                     {"type": "Pods", "value": 4, "periodSeconds": 15}]},
        },
    )
    spec = policy.controller.spec
    assert (spec.min_replicas, spec.max_replicas) == (2, 50)
    memory = spec.metrics[1]
    assert (memory.container, memory.target.average_value_milli) == ("main", 400 * 2**20 * 1000)
    assert spec.metrics[3].target.value_milli == 2_000_000
    assert spec.metrics[4].selector == {"matchLabels": {"queue": "worker"}, "matchExpressions": ()}
    # API defaulting fills the unset select policy; the per-direction tolerance overrides the flag.
    assert spec.behavior.scale_down.select_policy == MAX
    assert policy.controller.tolerances().scale_down == 0.05
    assert policy.controller.tolerances().scale_up == 0.05  # the flag


def test_empty_behavior_gets_the_api_defaults():
    spec = _hpa(behavior={}).controller.spec
    assert spec.behavior == Behavior(
        ScalingRules(0, MAX, (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))),
        ScalingRules(None, MAX, (ScalingPolicy("Percent", 100, 15),)),
    )


@pytest.mark.parametrize("params, field", [
    ({"behavior": {"scaleDown": {"stabilizationWindowSeconds": -1}}},
     "policy.behavior.scaleDown.stabilizationWindowSeconds"),
    ({"behavior": {"scaleUp": {"stabilizationWindowSeconds": 3601}}},
     "policy.behavior.scaleUp.stabilizationWindowSeconds"),
    ({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}}},
     "policy.behavior.scaleUp.policies.0.periodSeconds"),
    ({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}}},
     "policy.behavior.scaleUp.policies.0.periodSeconds"),
    ({"behavior": {"scaleDown": {"policies": [{"type": "Percent", "value": 0, "periodSeconds": 15}]}}},
     "policy.behavior.scaleDown.policies.0.value"),
    ({"behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": -3, "periodSeconds": 15}]}}},
     "policy.behavior.scaleDown.policies.0.value"),
    ({"behavior": {"scaleDown": {"policies": [{"type": "Replicas", "value": 3, "periodSeconds": 15}]}}},
     "policy.behavior.scaleDown.policies.0.type"),
    ({"behavior": {"scaleDown": {"policies": []}}}, "policy.behavior.scaleDown.policies"),
    ({"behavior": {"scaleDown": {"selectPolicy": "Average"}}}, "policy.behavior.scaleDown.selectPolicy"),
    ({"behavior": {"scaleUp": {"tolerance": "-0.1"}}}, "policy.behavior.scaleUp.tolerance"),
    ({"behavior": {"scaleUp": {"stabilization_window_seconds": 10}}}, "policy.behavior.scaleUp.stabilization_window_seconds"),
    ({"minReplicas": 5, "maxReplicas": 3}, "maxReplicas"),
    ({"minReplicas": -1}, "policy.minReplicas"),
    ({"maxReplicas": 0}, "policy.maxReplicas"),
    ({"tolerance": -0.1}, "policy.tolerance"),
    ({"cpuInitializationPeriod": "soon"}, "policy.cpuInitializationPeriod"),
    ({"metrics": [{"type": "Resource"}]}, "resource: must populate"),
    ({"metrics": [{"type": "Pods", "resource": CPU_60[0]["resource"]}]}, "pods: must populate"),
    ({"metrics": [{**CPU_60[0], "external": {"metric": {"name": "x"}, "target": {"type": "Value", "value": 1}}}]},
     "external: must populate the given metric source only"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
     "must set either a target raw value or a target utilization"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 50, "averageValue": "500m"}}}]}, "may not set both"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 0}}}]}, "policy.metrics.0.resource.target.averageUtilization"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "AverageValue", "averageValue": "-1"}}}]}, "policy.metrics.0.resource.target.averageValue"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "AverageValue", "averageValue": "lots"}}}]}, "policy.metrics.0.resource.target.averageValue"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "cpus", "target": {
        "type": "Utilization", "averageUtilization": 50}}}]}, "policy.metrics.0.resource.name"),
    ({"metrics": [{"type": "Pods", "pods": {"metric": {"name": "concurrency"}, "target": {
        "type": "Value", "value": 5}}}]}, "must specify a positive target averageValue"),
    ({"metrics": [{"type": "External", "external": {"metric": {"name": "rps"}, "target": {
        "type": "Value", "value": 5, "averageValue": 5}}}]}, "may not set both a target value for metric"),
    ({"metrics": [{"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "x"},
                                                "metric": {"name": "rps"}, "target": {"type": "Utilization",
                                                                                      "averageUtilization": 5}}}]},
     "must set either a target value or averageValue"),
    ({"min_replicas": 1}, "policy.min_replicas"),
    ({"minReplicas": 0}, "0 is allowed only with an Object or External metric"),
    ({"maxReplicas": 3, "minReplicas": 5}, "maxReplicas (3) must be greater than or equal to minReplicas (5)"),
])
def test_invalid_parameters_name_the_field(params, field):
    with pytest.raises(TidalInputError) as info:
        build_policy({"name": "hpa", **params})
    assert field in str(info.value)


def test_quantities():
    assert parse_quantity("500m").milli == 500
    assert parse_quantity("1.5").milli == 1500
    assert parse_quantity("2Ki").milli == 2048 * 1000
    assert parse_quantity("1e3").milli == 1_000_000
    assert parse_quantity("0.0001").milli == 1  # MilliValue rounds up
    assert parse_quantity(0.1).milli == 100
    assert parse_quantity("50m").as_float() == 0.05
    with pytest.raises(ValueError):
        parse_quantity("1.5 cores")


def test_config_dump_round_trips():
    config = HPAConfig.model_validate({"metrics": CPU_60, "behavior": {"scaleUp": {"tolerance": "50m"}}})
    dumped = config.model_dump(by_alias=True, mode="json")
    assert dumped["behavior"]["scaleUp"]["tolerance"] == "50m"
    assert HPAConfig.model_validate(dumped) == config


# --------------------------------------------------------------------------- adapter


def test_adapter_maps_pods_and_units():
    history = MetricsHistory()
    history.record(15.0, {"ready_replicas": 2.0, "rps": 30.0, "cpu_utilization": 40.0})
    pods = [
        _pod(1, 0.5, in_flight=3),
        _pod(2, 0.25, in_flight=1),
        _pod(3, None, ready_at=None, started_at=20.0),  # cold-starting
        _pod(4, 0.1, draining=True),
    ]
    obs = _obs(30.0, 3, pods, history, rps=60.0, cpu_utilization=50.0)
    source = ObservationSource(obs)
    assert (source.sample_time, source.sample_window) == (30.0, 15.0)
    assert source.status_replicas == 3
    infos = {p.name: p for p in source.pods()}
    assert infos["pod-3"].phase == "Pending" and infos["pod-4"].deleting
    assert infos["pod-1"].containers[0].requests == {"cpu": 1000, "memory": 512 * 2**20 * 1000}
    items = {i.pod: i for i in source.resource_metrics("cpu")}
    assert set(items) == {"pod-1", "pod-2", "pod-4"}
    assert items["pod-1"].containers["main"]["cpu"] == 500
    assert {k: m.value for k, m in source.pods_metric("concurrency", None).items()} == {"pod-1": 3000, "pod-2": 1000}
    assert {k: m.value for k, m in source.pods_metric("rps", None).items()} == {"pod-1": 30000, "pod-2": 30000}
    assert source.pods_metric("cpu_utilization", None)["pod-2"].value == 50000
    assert source.external_metric("rps", None) == [60000]
    assert source.external_metric("nothing", None) == []


# --------------------------------------------------------------------------- decisions and state


def _steady(policy: HPAPolicy, t: float, replicas: int, cpu: float, history: MetricsHistory) -> int:
    pods = [_pod(i, cpu) for i in range(replicas)]
    return policy.decide(_obs(t, replicas, pods, history)).replicas


def test_scales_up_at_once_and_down_after_the_stabilization_window():
    policy = _hpa(metrics=CPU_60, minReplicas=1, maxReplicas=20)
    history = MetricsHistory()
    assert _steady(policy, 15, 4, 0.6, history) == 4          # on target
    assert _steady(policy, 30, 4, 0.9, history) == 6          # 90 % / 60 % x 4
    replicas, t = 6, 30.0
    while t < 600:                                            # load falls to 20 %
        t += 15
        replicas = _steady(policy, t, replicas, 0.2, history)
        if t <= 330:
            assert replicas == 6, t                           # held: 6 was recommended at t=30
    assert replicas == 2
    decision = policy.decide(_obs(615, 2, [_pod(i, 0.2) for i in range(2)], history))
    assert "cpu=" in decision.reason


def test_behavior_rate_limits_scale_up():
    policy = _hpa(metrics=CPU_60, behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    history = MetricsHistory()
    assert _steady(policy, 15, 2, 1.2, history) == 3  # wants 4; one pod per minute
    assert _steady(policy, 30, 3, 1.2, history) == 3  # the event of t=15 still counts
    assert _steady(policy, 90, 3, 1.2, history) == 4


def test_select_policy_disabled_freezes_that_direction():
    up_off = _hpa(metrics=CPU_60, behavior={"scaleUp": {"selectPolicy": "Disabled"}})
    assert _steady(up_off, 15, 2, 1.2, MetricsHistory()) == 2            # wants 4: scale-up disabled
    down_off = _hpa(metrics=CPU_60, behavior={"scaleDown": {"selectPolicy": "Disabled"}})
    history = MetricsHistory()
    for t in range(15, 1200, 15):                                        # far past any window
        assert _steady(down_off, t, 6, 0.1, history) == 6, t             # wants 1: scale-down disabled
    assert _steady(down_off, 1215, 6, 1.2, history) == 12                # scale-up still works


def test_scale_up_limit_factor_comes_from_the_config():
    # Legacy path (no behavior): growth per sync at most max(factor x current, minimum).
    assert _steady(_hpa(metrics=CPU_60), 15, 4, 6.0, MetricsHistory()) == 8                    # 2 x 4
    assert _steady(_hpa(metrics=CPU_60, scaleUpLimitFactor=3.0), 15, 4, 6.0, MetricsHistory()) == 12
    assert _steady(_hpa(metrics=CPU_60, scaleUpLimitFactor=1.0, scaleUpLimitMinimum=1.0), 15, 4, 6.0,
                   MetricsHistory()) == 4


def test_unready_and_starting_pods_dampen_scale_up():
    policy = _hpa(metrics=CPU_60)
    history = MetricsHistory()
    pods = [_pod(0, 0.9), _pod(1, 0.9), _pod(2, None, ready_at=None, started_at=10.0)]
    # 150 % on 2 measured pods; the pending pod counts as 0 % -> (0.9+0.9)/3 = 60 %: hold.
    assert policy.decide(_obs(15, 3, pods, history)).replicas == 3


def test_missing_metrics_hold_the_count():
    policy = _hpa(metrics=CPU_60)
    obs = _obs(0, 3, [_pod(i, None) for i in range(3)])
    decision = policy.decide(obs)
    assert decision.replicas == 3 and "no metrics returned" in decision.reason


def test_average_value_and_memory_targets():
    # Resource with averageValue: plain average of usage (CPU readiness rules still apply).
    cpu = _hpa(metrics=[{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "AverageValue", "averageValue": "500m"}}}])
    assert _steady(cpu, 15, 4, 0.75, MetricsHistory()) == 6
    # Memory utilization: tidal MiB against a 512 MiB request.
    memory = _hpa(metrics=[{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "Utilization", "averageUtilization": 50}}}])
    pods = [PodSample(id=i, ready=True, started_at=0.0, ready_at=0.0, in_flight=0,
                      requests={"cpu": 1.0, "memory": 512.0}, usage={"memory": 384.0}) for i in range(2)]
    assert memory.decide(_obs(15, 2, pods)).replicas == 3  # 75 % / 50 % x 2


def test_external_metric_scales_from_zero():
    metrics = [{"type": "External", "external": {"metric": {"name": "rps"}, "target": {
        "type": "AverageValue", "averageValue": "20"}}}]
    # minReplicas 0 (HPAScaleToZero) is allowed because the metric is External.
    assert _hpa(metrics=metrics, minReplicas=0).decide(_obs(15, 0, [], rps=50.0)).replicas == 3  # ceil(50 / 20)
    assert _hpa(metrics=metrics, minReplicas=0).decide(_obs(15, 0, [], rps=0.0)).replicas == 0
    # With the API default minReplicas of 1, a target at zero replicas is not autoscaled.
    assert _hpa(metrics=metrics).decide(_obs(15, 0, [], rps=50.0)).replicas == 0


def test_pods_metric_concurrency_per_replica():
    policy = _hpa(metrics=[{"type": "Pods", "pods": {"metric": {"name": "concurrency"}, "target": {
        "type": "AverageValue", "averageValue": "4"}}}])
    pods = [_pod(i, 0.5, in_flight=n) for i, n in enumerate((8, 6, 10))]
    assert policy.decide(_obs(15, 3, pods)).replicas == 6  # mean 8 in flight / 4


def test_state_round_trips_through_json():
    history = MetricsHistory()
    a = _hpa(metrics=CPU_60, behavior={})
    for t, n, cpu in ((15, 4, 0.9), (30, 6, 0.3), (45, 6, 0.3)):
        _steady(a, t, n, cpu, history)
    state = json.loads(json.dumps(a.state_dict()))
    b = _hpa(metrics=CPU_60, behavior={})
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    for t in (60, 300, 360):
        assert _steady(a, t, 6, 0.3, history) == _steady(b, t, 6, 0.3, history)
    fresh = _hpa()
    fresh.load_state_dict({})
    assert fresh.state_dict()["recommendations"] is None


# --------------------------------------------------------------------------- the example scenario


def test_example_scenario_shows_five_minute_scale_down_stabilization():
    scenario = load_scenario(REPO / "examples" / "hpa_scale_down_stabilization.yaml")
    result = simulate(scenario)
    ticks = result.ticks.to_pydict()
    drop = scenario.workload.at
    spec = dict(zip(ticks["time"], ticks["spec"], strict=True))
    before = spec[drop - 15]
    # Load falls at t=drop; the last pre-drop recommendation (t=drop) is kept for 300 s.
    held = [n for t, n in spec.items() if drop <= t <= drop + 300]
    assert held and all(n == before for n in held)
    after = [n for t, n in spec.items() if t >= drop + 315]
    assert after[0] < before / 2
    first_change = min(t for t, n in spec.items() if t > drop and n != before)
    assert first_change == pytest.approx(drop + 315, abs=15)
