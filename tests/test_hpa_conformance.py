"""Kubernetes HPA conformance: every case translated from the upstream Go tests must pass.

One test per upstream case, named after the upstream Go test (and its older name, if any). The case files are copies of the project's
shared conformance set (see ``tests/conformance/README.md``); schemas are in the HPA spec §1.
Times: "now" is 0 s, a case offset ``N`` is ``-N`` s and ``"zero"`` is Go's zero time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import upstream_case_ids
from tidal.policy.hpa import calculator as calc
from tidal.policy.hpa.behavior import (
    Behavior,
    ScalingPolicy,
    ScalingRules,
    default_behavior,
    generate_scale_down_rules,
    generate_scale_up_rules,
)
from tidal.policy.hpa.controller import HPAController
from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.history import (
    HPAState,
    Recommendation,
    ScaleEvent,
    replicas_change_per_period,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
    store_scale_event,
)
from tidal.policy.hpa.metrics import PodMetric, PodMetricsItem, resource_samples
from tidal.policy.hpa.normalize import (
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    scale_down_limit,
    scale_up_limit,
)
from tidal.policy.hpa.numeric import ZERO_TIME, Tolerances
from tidal.policy.hpa.pods import Container, PodInfo, calculate_requests, group_pods
from tidal.policy.hpa.spec import ControllerSettings, HPASpec, MetricSpec, MetricTarget

CONFORMANCE = Path(__file__).resolve().parent / "conformance"
NOW = 0.0


def _cases(filename: str) -> list[Any]:
    cases = json.loads((CONFORMANCE / filename).read_text(encoding="utf-8"))
    return [pytest.param(case, id=i) for case, i in zip(cases, upstream_case_ids(cases), strict=True)]


def _at(offset: float | str | None) -> float | None:
    """A case time (seconds before now, "zero", or null) on the test clock."""
    if offset is None:
        return None
    if offset == "zero":
        return ZERO_TIME
    return NOW - float(offset)


def _pod(p: dict[str, Any], resource: str = "cpu") -> PodInfo:
    def container(c: dict[str, Any]) -> Container:
        requests = {} if c.get("request_milli") is None else {resource: c["request_milli"]}
        return Container(c["name"], requests, c.get("restart_policy"))

    pod_level = p.get("pod_level_request_milli")
    return PodInfo(
        name=p["name"],
        phase=p.get("phase", "Running"),
        ready=p.get("ready", True) if p.get("has_ready_condition", True) else None,
        ready_transition_time=_at(p.get("ready_transition_offset_s")),
        start_time=_at(p.get("start_time_offset_s")),
        deleting=bool(p.get("deletion_timestamp", False)),
        containers=tuple(container(c) for c in p.get("containers") or ()),
        init_containers=tuple(container(c) for c in p.get("init_containers") or ()),
        pod_requests=None if pod_level is None else {resource: pod_level},
    )


def _target(t: dict[str, Any] | None) -> MetricTarget | None:
    if t is None:
        return None
    return MetricTarget(t["type"], t.get("value_milli"), t.get("average_value_milli"), t.get("average_utilization"))


def _tolerances(t: dict[str, float]) -> Tolerances:
    return Tolerances(scale_down=t["scale_down"], scale_up=t["scale_up"])


def _rules(d: dict[str, Any] | None) -> ScalingRules | None:
    if d is None:
        return None
    policies = d.get("policies")
    return ScalingRules(
        d.get("stabilizationWindowSeconds"),
        d.get("selectPolicy"),
        None if policies is None else tuple(ScalingPolicy(p["type"], p["value"], p["periodSeconds"]) for p in policies),
    )


def _behavior(d: dict[str, Any] | None) -> Behavior | None:
    return None if d is None else Behavior(_rules(d.get("scaleUp")), _rules(d.get("scaleDown")))


def _events(events: list[dict[str, Any]] | None) -> list[ScaleEvent]:
    return [ScaleEvent(e["replica_change"], NOW - e["seconds_ago"], e.get("outdated", False)) for e in events or ()]


def _recommendations(recs: list[dict[str, Any]] | None) -> list[Recommendation] | None:
    return None if recs is None else [Recommendation(r["replicas"], NOW - r["seconds_ago"]) for r in recs]


# --------------------------------------------------------------------------- replica calculator


def _resource_items(case: dict[str, Any]) -> list[PodMetricsItem]:
    """PodMetrics items as the metrics API returned them (raw per-container usage)."""
    if case["metrics_api_empty"]:
        return []
    items = []
    for p in [*case["pods"], *case.get("extra_pod_metrics", [])]:
        containers = p.get("containers") or []
        if all(c.get("usage_milli") is None for c in containers):
            continue  # the API returned nothing for this pod
        usage = {c["name"]: ({} if c["usage_milli"] is None else {case["resource"]: c["usage_milli"]})
                 for c in containers}
        items.append(PodMetricsItem(p.get("name", p.get("pod_name")), _at(p["metric_timestamp_offset_s"]),
                                    p["metric_window_s"], usage))
    return items


def _plain_samples(case: dict[str, Any]) -> dict[str, PodMetric]:
    samples = {}
    for p in [*case["pods"], *case.get("extra_pod_metrics", [])]:
        if p.get("metric_value_milli") is not None:
            samples[p.get("name", p.get("pod_name"))] = PodMetric(
                p["metric_value_milli"], _at(p.get("metric_timestamp_offset_s", 0)), p.get("metric_window_s", 60))
    return {} if case.get("metrics_api_empty") else samples


def _run_calculator(case: dict[str, Any]) -> calc.ReplicaProposal:
    fn = case["function"]
    tol = _tolerances(case["tolerance"])
    target = case["target"]
    resource = case.get("resource") or "cpu"
    pods = [_pod(p, resource) for p in case["pods"]]
    settings = calc.CalculatorSettings(tol, case.get("cpu_initialization_period_s", 120),
                                       case.get("delay_of_initial_readiness_status_s", 10))
    if fn == "GetResourceReplicas":
        items = _resource_items(case)
        if items:  # the effective per-pod sample the case states must be what the client extracts
            samples = resource_samples(items, resource, case["container"] or "")
            for p in case["pods"]:
                assert samples.get(p["name"], PodMetric(None)).value == p["metric_value_milli"], p["name"]
        return calc.get_resource_replicas(case["current_replicas"], target["average_utilization"], resource, pods,
                                          items, NOW, settings, case["container"] or "")
    if fn == "GetMetricReplicas":
        return calc.get_metric_replicas(case["current_replicas"], target["average_value_milli"], case["metric_name"],
                                        pods, _plain_samples(case), NOW, settings)
    if fn == "GetObjectMetricReplicas":
        return calc.get_object_metric_replicas(case["current_replicas"], target["value_milli"],
                                               case["object_metric_value_milli"], pods, tol)
    if fn == "GetObjectPerPodMetricReplicas":
        return calc.get_object_per_pod_metric_replicas(case["status_replicas"], target["average_value_milli"],
                                                       case["object_metric_value_milli"], tol)
    if fn == "GetExternalMetricReplicas":
        return calc.get_external_metric_replicas(case["current_replicas"], target["value_milli"],
                                                 case["external_metric_values_milli"], pods, tol, case["metric_name"])
    if fn == "GetExternalPerPodMetricReplicas":
        return calc.get_external_per_pod_metric_replicas(case["status_replicas"], target["average_value_milli"],
                                                         case["external_metric_values_milli"], tol, case["metric_name"])
    raise AssertionError(f"unknown function {fn}")


@pytest.mark.parametrize("case", _cases("hpa_replica_calculator_cases.json"))
def test_hpa_replica_calculator(case: dict[str, Any]) -> None:
    expected = case["expected"]
    if expected.get("error"):
        with pytest.raises(MetricError, match=re.escape(expected["error_contains"])):
            _run_calculator(case)
        return
    result = _run_calculator(case)
    assert result.replicas == expected["replicas"]
    if case["metric_kind"] == "resource":
        assert (result.utilization, result.raw_value) == (expected["utilization"], expected["raw_value_milli"])
    else:
        assert result.usage == expected["usage_milli"]


@pytest.mark.parametrize("case", _cases("hpa_group_pods_cases.json"))
def test_hpa_group_pods(case: dict[str, Any]) -> None:
    pods = [_pod(p, case["resource"]) for p in case["pods"]]
    metrics = {name: PodMetric(m["value_milli"], _at(m["timestamp_offset_s"]), m["window_s"])
               for name, m in case["metrics"].items()}
    groups = group_pods(pods, metrics, case["resource"], NOW, case["cpu_initialization_period_s"],
                        case["delay_of_initial_readiness_status_s"])
    expected = case["expected"]
    assert groups.ready_count == expected["ready_pod_count"]
    assert groups.unready == set(expected["unready"])
    assert groups.missing == set(expected["missing"])
    assert groups.ignored == set(expected["ignored"])


@pytest.mark.parametrize("case", _cases("hpa_pod_requests_cases.json"))
def test_hpa_pod_requests(case: dict[str, Any]) -> None:
    pods = [_pod(p, case["resource"]) for p in case["pods"]]
    run = lambda: calculate_requests(pods, case["container"], case["resource"],  # noqa: E731
                                     case["pod_level_resources_enabled"])
    expected = case["expected"]
    if expected.get("error"):
        with pytest.raises(MetricError, match=re.escape(expected["error_contains"])):
            run()
    else:
        assert run() == expected["requests"]


# --------------------------------------------------------------------------- behavior and normalization


def _behavior_case(case: dict[str, Any]) -> None:
    kind = case["kind"]
    if kind == "convert_desired_replicas_with_behavior_rate":
        behavior = default_behavior(_behavior(case["behavior"]))
        assert behavior == _behavior(case["behavior_effective"])  # our API defaulting is Go's
        replicas, reason = convert_desired_replicas_with_behavior_rate(
            case["current_replicas"], case["prenormalized_desired_replicas"], case["min_replicas"],
            case["max_replicas"], behavior.scale_up, behavior.scale_down, _events(case["scale_up_events"]),
            _events(case["scale_down_events"]), NOW)
        assert (replicas, reason) == (case["expected_replicas"], case["expected_condition_reason"])
    elif kind == "stabilize_recommendation_with_behaviors":
        # Unset windows are 0 in this Go fixture (int32 zero value), not the API defaults.
        b = case["behavior"]
        up = (b.get("scaleUp") or {}).get("stabilizationWindowSeconds") or 0
        down = (b.get("scaleDown") or {}).get("stabilizationWindowSeconds") or 0
        state = HPAState(recommendations=_recommendations(case["recommendations"]) or [])
        result = stabilize_recommendation_with_behaviors(state, case["current_replicas"],
                                                         case["prenormalized_desired_replicas"], up, down, NOW)
        assert result == case["expected_replicas"]
        if case.get("expected_recommendations_after") is not None:
            assert [r.replicas for r in state.recommendations] == case["expected_recommendations_after"]
    elif kind == "stabilize_recommendation":
        state = HPAState(recommendations=_recommendations(case["recommendations"]) or [])
        result = stabilize_recommendation(state, case["prenormalized_desired_replicas"],
                                          case["downscale_stabilization_window_s"], NOW)
        assert result == case["expected_replicas"]
        assert len(state.recommendations) == case["expected_recommendations_count_after"]
    elif kind == "convert_desired_replicas_with_rules":
        replicas, reason = convert_desired_replicas_with_rules(
            case["current_replicas"], case["prenormalized_desired_replicas"], case["min_replicas"],
            case["max_replicas"], case["scale_up_limit_factor"], case["scale_up_limit_minimum"])
        assert (replicas, reason) == (case["expected_replicas"], case["expected_condition_reason"])
    elif kind in ("scale_up_limit", "scale_down_limit"):
        b = _behavior(case["behavior"])
        if kind == "scale_up_limit":
            limit = scale_up_limit(case["current_replicas"], [], [], b.scale_up, NOW)
        else:
            limit = scale_down_limit(case["current_replicas"], [], [], b.scale_down, NOW)
        assert limit == case["expected_limit"]
    elif kind == "store_scale_event":
        rules = _rules(case["behavior_rules_for_direction"])
        behavior = None if rules is None else Behavior(rules, rules)
        for direction in case["directions"]:
            events = _events(case["prev_events"])
            assert replicas_change_per_period(60, events, NOW) == case["expected_replicas_change_last_60s_before_store"]
            up = direction == "up"
            state = HPAState(scale_up_events=events if up else [], scale_down_events=[] if up else events)
            prev = case["current_replicas"]
            store_scale_event(state, behavior, prev, prev + case["replica_change"] * (1 if up else -1), NOW)
            stored = state.scale_up_events if up else state.scale_down_events
            assert [{"replica_change": e.replica_change, "outdated": e.outdated} for e in stored] == \
                case["expected_events_after"], direction
    elif kind == "generate_rules":
        generate = generate_scale_up_rules if case["direction"] == "scaleUp" else generate_scale_down_rules
        assert generate(_rules(case["input_rules"])) == _rules(case["expected_rules"])
    elif kind == "reconcile_replica_bounds":
        controller = HPAController(HPASpec(case["max_replicas"], case["min_replicas"]))
        result = controller.reconcile(NOW, case["current_replicas"], case["current_replicas"], _NoMetrics())
        assert result.desired_replicas == case["expected_replicas"]
    else:
        raise AssertionError(f"unknown case kind {kind}")


@pytest.mark.parametrize("case", _cases("hpa_behavior_cases.json"))
def test_hpa_behavior(case: dict[str, Any]) -> None:
    _behavior_case(case)


# --------------------------------------------------------------------------- whole reconcile


class _NoMetrics:
    """A source that must not be consulted (bounds are enforced before any metric)."""

    def __getattr__(self, name: str):
        raise AssertionError(f"metrics consulted: {name}")


_API_OF = {"Resource": "resource", "ContainerResource": "resource", "Pods": "pods", "Object": "object",
           "External": "external"}


class _CaseSource:
    """The Go controller test harness's fake APIs, from one controller case."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.case = case
        self.failing = {_API_OF.get(m["type"]) for m in case["metrics"] if m.get("fetch_error")}
        if case.get("resource_metrics_api_error"):
            self.failing.add("resource")

    def _check(self, api: str) -> None:
        if api in self.failing:
            raise MetricError(f"{api} metrics API failed")

    def pods(self) -> list[PodInfo]:
        return [_pod(p) for p in self.case["pods"]]

    def resource_metrics(self, resource: str) -> list[PodMetricsItem]:
        self._check("resource")
        return [PodMetricsItem(m["pod_name"], _at(m["metric_timestamp_offset_s"]), m["metric_window_s"],
                               {c["name"]: {resource: c["usage_milli"]} for c in m["containers"]})
                for m in self.case["resource_metrics"]]

    def pods_metric(self, name: str, selector: Any) -> dict[str, PodMetric]:
        self._check("pods")
        return {m["pod_name"]: PodMetric(m["metric_value_milli"], NOW, 60.0) for m in self.case["pods_metric_values"]}

    def object_metric(self, name: str, described_object: Any, selector: Any) -> int:
        self._check("object")
        if self.case["object_metric_value_milli"] is None:
            raise MetricError("no object metric")
        return self.case["object_metric_value_milli"]

    def external_metric(self, name: str, selector: Any) -> list[int]:
        self._check("external")
        return list(self.case["external_metric_values_milli"])


def _metric_spec(m: dict[str, Any]) -> MetricSpec:
    return MetricSpec(m["type"], m.get("resource") or m.get("metric_name") or "", _target(m.get("target")),
                      container=m.get("container") or "", described_object=m.get("described_object"),
                      selector=m.get("metric_selector"))


@pytest.mark.parametrize("case", _cases("hpa_controller_cases.json"))
def test_hpa_controller(case: dict[str, Any]) -> None:
    ctl = case["controller"]
    settings = ControllerSettings(
        tolerance=ctl["tolerance"]["scale_up"],
        cpu_initialization_period=ctl["cpu_initialization_period_s"],
        delay_of_initial_readiness_status=ctl["delay_of_initial_readiness_status_s"],
        downscale_stabilization_window=ctl["downscale_stabilization_window_s"],
        scale_up_limit_factor=ctl["scale_up_limit_factor"],
        scale_up_limit_minimum=ctl["scale_up_limit_minimum"],
    )
    assert ctl["tolerance"]["scale_down"] == ctl["tolerance"]["scale_up"]
    spec = HPASpec(case["max_replicas"], case["min_replicas"], tuple(_metric_spec(m) for m in case["metrics"]),
                   _behavior(case["behavior"]))
    state = HPAState(_recommendations(case["recommendations"]), _events(case["scale_up_events"]),
                     _events(case["scale_down_events"]))
    controller = HPAController(spec, settings, state)
    result = controller.reconcile(NOW, case["spec_replicas"], case["status_replicas"], _CaseSource(case))
    assert result.desired_replicas == case["expected_replicas"], result
