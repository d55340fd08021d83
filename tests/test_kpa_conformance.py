"""Knative KPA conformance: cases translated from knative/serving's own unit tests.

Source and schema: ``tests/conformance/knative_kpa_cases.json`` (copied byte for byte from the
project's shared conformance set; knative/serving commit 98e5ef90aa, spec ``knative-kpa.md`` §10).
One test per upstream case, with the case name as the id.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import upstream_case_ids
from tidal.policy.kpa.buckets import TimedFloat64Buckets, WeightedFloat64Buckets, compute_smoothing_coeff
from tidal.policy.kpa.decider import Autoscaler, DeciderSpec
from tidal.policy.kpa.gomath import round_to_n_digits
from tidal.policy.kpa.resources import initial_scale, panic_window, resolve_metric_target, stable_window
from tidal.policy.kpa.scaler import PAStatus, ScaleSettings, SKSStatus, scale
from tidal.policy.kpa.status import compute_num_activators, status_desired_scale

CASES: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "conformance" / "knative_kpa_cases.json").read_text(encoding="utf-8"))


def cases(section: str) -> list[Any]:
    items = CASES[section]
    ids = upstream_case_ids(items, detail=lambda c: f"n={c['n']}, {c['value']!r}")
    return [pytest.param(c, id=i) for c, i in zip(items, ids, strict=True)]


# --------------------------------------------------------------------------- decider


def decider_spec(raw: dict[str, Any]) -> DeciderSpec:
    return DeciderSpec(
        target_value=raw["target_value"],
        total_value=raw["total_value"],
        target_burst_capacity=raw["target_burst_capacity"],
        panic_threshold=raw["panic_threshold"],
        max_scale_up_rate=raw["max_scale_up_rate"],
        max_scale_down_rate=raw["max_scale_down_rate"],
        activator_capacity=raw["activator_capacity"],
        stable_window=raw["stable_window_s"],
        scaling_metric=raw["scaling_metric"],
        scale_down_delay=raw["scale_down_delay_s"],
        reachable=raw["reachable"],
        activation_scale=raw["activation_scale"],
        initial_scale=raw["initial_scale"],
    )


_SPEC_FIELDS = {"stable_window_s": "stable_window", "scale_down_delay_s": "scale_down_delay"}


def _ready(raw: Any) -> int | None:
    if isinstance(raw, dict):
        # NotFound endpoints count as zero pods; any other error makes the tick invalid.
        return 0 if raw["error"] == "not_found" else None
    return int(raw)


@pytest.mark.parametrize("case", cases("decider_cases"))
def test_knative_autoscaler(case: dict[str, Any]) -> None:
    spec = decider_spec(case["spec"])
    at_construction = case["ready_pods_at_construction"]
    autoscaler = Autoscaler(spec, None if at_construction == "error" else at_construction, now=0.0)
    for i, step in enumerate(case["steps"]):
        where = f"step {i} ({step['op']})"
        op = step["op"]
        if op == "scale":
            metric = "rps" if autoscaler.spec.scaling_metric == "rps" else "concurrency"
            observed = step["observed"][metric]
            stable = None if "error" in observed else observed["stable"]
            panic = None if "error" in observed else observed["panic"]
            result = autoscaler.scale(step["time_s"], _ready(step["ready_pods"]), stable, panic)
            expect = step["expect"]
            assert result.valid == expect["valid"], where
            assert result.desired == expect["desired"], where
            assert abs(result.excess_burst_capacity - expect["ebc"]) <= expect["ebc_tolerance"], where
            if "panicking" in expect:
                assert autoscaler.panicking == expect["panicking"], where
            if "panic_time_s" in expect:
                assert autoscaler.panic_time == expect["panic_time_s"], where
        elif op == "update_spec":
            autoscaler.update(decider_spec(step["spec"]))
        elif op == "patch_spec":
            changes = {_SPEC_FIELDS.get(k, k): v for k, v in step["changes"].items()}
            autoscaler.update(autoscaler.spec.with_changes(**changes))
        elif op == "set_internal_state":
            autoscaler.panic_time = step["panic_time_s"]
            autoscaler.max_panic_pods = step["max_panic_pods"]
        elif op == "check_state":
            expect = step["expect"]
            if "panicking" in expect:
                assert autoscaler.panicking == expect["panicking"], where
            if "max_panic_pods" in expect:
                assert autoscaler.max_panic_pods == expect["max_panic_pods"], where
        else:  # pragma: no cover - a new op in the case file must be handled here
            pytest.fail(f"unknown op {op!r}")


# --------------------------------------------------------------------------- reconciler


@pytest.mark.parametrize("case", cases("activator_count_cases"))
def test_knative_compute_activator_num(case: dict[str, Any]) -> None:
    got = compute_num_activators(case["ready_pods"], case["total_value"], case["target_burst_capacity"],
                                 case["activator_capacity"])
    assert got == case["expect_num_activators"]


def scale_settings(config: dict[str, Any], annotations: dict[str, Any]) -> ScaleSettings:
    """Annotation-or-config resolution, as the reconciler reads the PA."""
    return ScaleSettings(
        enable_scale_to_zero=config["enable_scale_to_zero"],
        stable_window=stable_window(config["stable_window_s"], annotations.get("window_s")),
        scale_to_zero_grace_period=config["scale_to_zero_grace_period_s"],
        scale_to_zero_pod_retention_period=annotations.get(
            "scale-to-zero-pod-retention-period_s", config["scale_to_zero_pod_retention_period_s"]),
        initial_scale=initial_scale(config["initial_scale"], config["allow_zero_initial_scale"],
                                    annotations.get("initial-scale")),
        min_scale=annotations.get("min-scale", config["min_scale"]),
        max_scale=annotations.get("max-scale", config["max_scale"]),
        target_burst_capacity=annotations.get("target-burst-capacity", config["target_burst_capacity"]),
        progress_deadline=annotations.get("progress-deadline_s", config["progress_deadline_s"]),
    )


@pytest.mark.parametrize("case", cases("scale_gate_cases"))
def test_knative_scaler(case: dict[str, Any]) -> None:
    now = 10_000.0
    pa_raw = case["pa"]
    pa = PAStatus(active=pa_raw["active_condition"], active_since=now - pa_raw["active_condition_age_s"],
                  scale_target_initialized=pa_raw["scale_target_initialized"], reachability=pa_raw["reachability"])
    sks_raw = case["sks"]
    sks = None if sks_raw is None else SKSStatus(sks_raw["mode"], now - sks_raw["proxy_for_s"])
    probe_raw = case["activator_probe"]
    probes: list[bool] = []

    def probe() -> bool:
        if probe_raw == "must_not_be_called":
            pytest.fail("the activator probe must not be called")
        probes.append(True)
        return bool(probe_raw["result"]) and not probe_raw["error"]

    settings = scale_settings(case["config"], pa_raw["annotations"])
    outcome = scale(case["desired_scale_input"], now=now, settings=settings, pa=pa, sks=sks,
                    current_replicas=case["current_replicas"], activator_in_path=probe)
    expect = case["expect"]
    assert outcome.scale == expect["returned_scale"]
    assert outcome.patch == expect["patched_to"]
    if expect["enqueue_count"] is not None:
        assert (outcome.requeue_after is not None) == bool(expect["enqueue_count"])
    if expect["async_probe_count"] is not None:
        assert int(outcome.async_probe) == expect["async_probe_count"]


@pytest.mark.parametrize("case", cases("compute_status_cases"))
def test_knative_compute_status(case: dict[str, Any]) -> None:
    assert status_desired_scale(case["have_desired_scale"], case["want"]) == case["expect_desired_scale"]
    # ActualScale is the ready pod count.
    assert case["ready_pods"] == case["expect_actual_scale"]


# --------------------------------------------------------------------------- resources


@pytest.mark.parametrize("case", cases("metric_target_cases"))
def test_knative_resolve_metric_target(case: dict[str, Any]) -> None:
    cfg, pa = case["config"], case["pa"]
    got = resolve_metric_target(
        metric=pa.get("metric", "concurrency"),
        container_concurrency=pa.get("container_concurrency", 0),
        container_concurrency_target_fraction=cfg["container_concurrency_target_fraction"],
        container_concurrency_target_default=cfg["container_concurrency_target_default"],
        rps_target_default=cfg["rps_target_default"],
        target_utilization=cfg["target_utilization"],
        target_annotation=pa.get("target_annotation"),
        target_utilization_percentage_annotation=pa.get("target_utilization_percentage_annotation"),
    )
    assert got.target == case["expect_target"]
    assert got.total == case["expect_total"]


@pytest.mark.parametrize("case", cases("metric_window_config_cases"))
def test_knative_make_metric(case: dict[str, Any]) -> None:
    cfg = case["config"]
    stable = stable_window(cfg["stable_window_s"], case["pa_window_annotation_s"])
    assert stable == case["expect_stable_window_s"]
    if "expect_panic_window_s" in case:
        pct = case["pa_panic_window_percentage_annotation"]
        pct = cfg["panic_window_percentage"] if pct is None else pct
        assert panic_window(stable, pct) == case["expect_panic_window_s"]


@pytest.mark.parametrize("case", cases("initial_scale_cases"))
def test_knative_get_initial_scale(case: dict[str, Any]) -> None:
    cfg = case["config"]
    got = initial_scale(cfg["initial_scale"], cfg["allow_zero_initial_scale"], case["pa_initial_scale_annotation"])
    assert got == case["expect_initial_scale"]


# --------------------------------------------------------------------------- aggregation


@pytest.mark.parametrize("case", cases("bucket_window_cases"))
def test_knative_bucketing(case: dict[str, Any]) -> None:
    cls = WeightedFloat64Buckets if case["algorithm"] == "weighted" else TimedFloat64Buckets
    buckets = cls(case["window_s"], case["granularity_s"])
    if "smoothing_coeff" in case:
        assert buckets.smoothing_coeff == pytest.approx(case["smoothing_coeff"], abs=1e-12)
    for i, step in enumerate(case["steps"]):
        where = f"step {i} ({step['op']} at {step.get('time_s')})"
        op = step["op"]
        if op == "record":
            buckets.record(step["time_s"], step["value"])
        elif op == "window_average":
            got = buckets.window_average(step["time_s"])
            if "round_digits" in step:
                got = round_to_n_digits(step["round_digits"], got)
            assert math.isclose(got, step["expect"], rel_tol=0.0, abs_tol=step["tolerance"]), f"{where}: {got}"
        elif op == "resize":
            buckets.resize_window(step["window_s"], step["wall_now_s"])
        elif op == "check_smoothing_coeff":
            assert isinstance(buckets, WeightedFloat64Buckets)
            assert math.isclose(buckets.smoothing_coeff, step["expect"], rel_tol=0.0, abs_tol=step["tolerance"]), where
        else:  # pragma: no cover
            pytest.fail(f"unknown op {op!r}")


@pytest.mark.parametrize("case", cases("smoothing_coeff_cases"))
def test_knative_compute_decay_multiplier(case: dict[str, Any]) -> None:
    assert math.isclose(compute_smoothing_coeff(case["num_buckets"]), case["expect"], rel_tol=0.0,
                        abs_tol=case["tolerance"])


@pytest.mark.parametrize("case", cases("round_to_n_digits_cases"))
def test_knative_round_to_n_digits(case: dict[str, Any]) -> None:
    assert round_to_n_digits(case["n"], case["value"]) == case["expect"]
