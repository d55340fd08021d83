"""KEDA conformance: cases translated from kedacore/keda's Go tests (tests/conformance/keda_cases.json).

One test per upstream case, named after the upstream test (``go_test``) or its table-case
name. Schema: ``docs/policies/keda.md`` and the KEDA spec's section 12.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import upstream_case_ids
from tidal.policy.keda import scaledjob
from tidal.policy.keda.config import (
    check_fallback_valid,
    check_replica_count_bounds,
    hpa_max_replicas,
    hpa_min_replicas,
)
from tidal.policy.keda.executor import (
    Condition,
    HPAStatus,
    ScaledObjectView,
    hpa_active_condition,
    idle_or_min_replica_count,
    request_scale,
)
from tidal.policy.keda.expr import compile_formula
from tidal.policy.keda.fallback import FallbackSpec, Health, ModifiersView, get_metrics_with_fallback
from tidal.policy.keda.modifiers import (
    COMPOSITE_METRIC_NAME,
    ModifierError,
    array_contains_element,
    calculate_formula,
    get_pair_trigger_and_metric,
    scaling_modifier_trigger_value,
)

CASES = json.loads((Path(__file__).resolve().parent / "conformance" / "keda_cases.json").read_text())


def cases(section: str) -> list[Any]:
    """``pytest.param`` per case, named after its upstream Go test (numbered when repeated)."""
    items = CASES[section]
    return [pytest.param(case, id=i) for case, i in zip(items, upstream_case_ids(items), strict=True)]


def test_case_file_is_the_shared_translation():
    assert CASES["schema_version"] == 1
    assert CASES["source"]["repo"] == "kedacore/keda"


# --------------------------------------------------------------------------- ScaledJob


@pytest.mark.parametrize("case", cases("scaledjob_effective_max_scale_cases"))
def test_keda_scaledjob_effective_max_scale(case):
    effective, scale_to = scaledjob.effective_max_scale(
        case["strategy"], case["custom_scaling_queue_length_deduction"], case["custom_scaling_running_job_percentage"],
        case["max_scale"], case["running_job_count"], case["pending_job_count"], case["max_replica_count"],
        case["scale_to"])
    assert effective == case["expect_effective_max_scale"]
    if "expect_scale_to" in case:
        assert scale_to == case["expect_scale_to"]


@pytest.mark.parametrize("case", cases("scaledjob_strategy_selection_cases"))
def test_keda_scaledjob_strategy_selection(case):
    chosen = scaledjob.select_strategy(case["strategy"], case["custom_scaling_queue_length_deduction"],
                                       case["custom_scaling_running_job_percentage"])
    assert chosen == case["expect_selected"]


@pytest.mark.parametrize("case", cases("scaledjob_scaling_decision_cases"))
def test_keda_scaledjob_scaling_decision(case):
    sj = case["scaled_job"]
    job = scaledjob.ScaledJobSpec(sj["min_replica_count"], sj["max_replica_count"], sj["strategy"])
    effective, scale_to = scaledjob.scaling_decision(job, case["running_job_count"], case["pending_job_count"],
                                                     case["scale_to"], case["max_scale"])
    assert effective == case["expect_effective_max_scale"]
    assert scale_to == case["expect_scale_to"]


@pytest.mark.parametrize("case", cases("scaledjob_state_cases"))
def test_keda_scaledjob_state(case):
    sj = case["scaled_job"]
    job = scaledjob.ScaledJobSpec(sj["min_replica_count"], sj["max_replica_count"],
                                  multiple_scalers_calculation=sj["multiple_scalers_calculation"])
    metrics = [scaledjob.scaler_metrics([s["metric_value"]], [s["target_average_value"]], s["is_active"], job.max_fn)
               for s in case["scalers"]]
    active, queue, max_value = scaledjob.is_scaled_job_active(metrics, job.multiple_scalers_calculation, job.min_fn,
                                                              job.max_fn)
    expect = case["expect"]
    assert (active, queue, max_value) == (expect["is_active"], expect["queue_length"], expect["max_value"])
    assert expect["is_error"] is False  # no scaler errors in these cases


@pytest.mark.parametrize("case", cases("scaledjob_target_average_value_cases"))
def test_keda_scaledjob_target_average_value(case):
    assert scaledjob.target_average_value(case["target_average_values"]) == pytest.approx(case["expect"], rel=1e-12)


@pytest.mark.parametrize("case", cases("scaledjob_replica_count_cases"))
def test_keda_scaledjob_replica_count(case):
    low, high = case["min_replica_count"], case["max_replica_count"]
    assert scaledjob.max_replica_count(low, high) == case["expect_max_replica_count_fn"]
    assert scaledjob.min_replica_count(low, high) == case["expect_min_replica_count_fn"]


# --------------------------------------------------------------------------- ScaledObject spec


@pytest.mark.parametrize("case", cases("hpa_replica_bounds_cases"))
def test_keda_hpa_replica_bounds(case):
    assert hpa_min_replicas(case["min_replica_count"]) == case["expect_hpa_min_replicas"]
    assert hpa_max_replicas(case["max_replica_count"]) == case["expect_hpa_max_replicas"]


@pytest.mark.parametrize("case", cases("replica_bounds_validation_cases"))
def test_keda_replica_bounds_validation(case):
    args = (case["min_replica_count"], case["max_replica_count"], case["idle_replica_count"])
    if case["expect_error"]:
        with pytest.raises(ValueError) as err:
            check_replica_count_bounds(*args)
        assert case["expect_error_contains"] in str(err.value)
    else:
        check_replica_count_bounds(*args)


@pytest.mark.parametrize("case", cases("fallback_validation_cases"))
def test_keda_fallback_validation(case):
    fb = case["fallback"]
    args = (fb["failure_threshold"] if fb else None, fb["replicas"] if fb else None, case["trigger_types"],
            case["using_scaling_modifiers"])
    if case["expect_error"]:
        with pytest.raises(ValueError):
            check_fallback_valid(*args)
    else:
        check_fallback_valid(*args)


@pytest.mark.parametrize("case", cases("idle_or_min_replica_cases"))
def test_keda_idle_or_min_replica(case):
    assert idle_or_min_replica_count(case["idle_replica_count"], case["min_replica_count"]) == (
        case["expect_is_idle"], case["expect_replicas"])


# --------------------------------------------------------------------------- executor


def _hpa(spec: dict | None) -> HPAStatus | None:
    if spec is None:
        return None
    active = spec.get("scaling_active")
    cond = None if active is None else Condition(active["status"], active.get("reason", ""), active.get("message", ""))
    return HPAStatus(read_error=bool(spec.get("read_error")), scaling_active=cond)


NOW = 1_000_000.0


@pytest.mark.parametrize("case", cases("scaledobject_request_scale_cases"))
def test_keda_scaledobject_request_scale(case):
    so = case["scaled_object"]
    fallback = so.get("fallback")
    view = ScaledObjectView(
        min_replica_count=so.get("min_replica_count"),
        idle_replica_count=so.get("idle_replica_count"),
        max_replica_count=so.get("max_replica_count"),
        fallback_replicas=None if fallback is None else fallback["replicas"],
        annotations=so.get("annotations", {}),
        namespace="namespace",
        name="name",
    )
    last_active = None if case["last_active_age_s"] is None else NOW - case["last_active_age_s"]
    created = None if case["creation_age_s"] is None else NOW - case["creation_age_s"]
    result = request_scale(view, now=NOW, current_replicas=case["current_replicas"], is_active=case["is_active"],
                           is_error=case["is_error"], last_active_time=last_active, creation_time=created,
                           active_triggers=case.get("active_triggers", ()), hpa=_hpa(case["hpa"]))
    expect = case["expect"]
    if "scale_to" in expect:
        assert result.scale_to == expect["scale_to"]
    if "last_active_time_set" in expect:
        assert (result.last_active_time == NOW) is expect["last_active_time_set"]
    if "event" in expect:
        assert expect["event"] in result.events
    for name, want in expect.get("conditions", {}).items():
        got = result.conditions.get(name)
        assert got is not None, f"condition {name} not set"
        if "status" in want:
            assert got.status == want["status"]
        if "status_not" in want:
            assert got.status != want["status_not"]
        if "reason" in want:
            assert got.reason == want["reason"]
        if "message" in want:
            assert got.message == want["message"]


@pytest.mark.parametrize("case", cases("hpa_health_cases"))
def test_keda_hpa_health(case):
    got = hpa_active_condition(_hpa(case["hpa"]))
    want = case["expect_hpa_active"]
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert [got.status, got.reason, got.message] == want


# --------------------------------------------------------------------------- fallback


@pytest.mark.parametrize("case", cases("fallback_cases"))
def test_keda_fallback(case):
    fb = case["fallback"]
    # A missing behavior is Go's zero value "" (the Go tests build the object directly).
    spec = None if fb is None else FallbackSpec(fb["failure_threshold"], fb["replicas"], fb.get("behavior", ""))
    health = {k: Health(v["failures"], v["status"]) for k, v in (case["health_before"] or {}).items()}
    scaler = case["scaler"]
    result = get_metrics_with_fallback(
        metric_name=case["metric_name"],
        values=[scaler["value"]] if "value" in scaler else None,
        error=scaler.get("error"),
        fallback=spec,
        modifiers=ModifiersView(),
        target_type=case["metric_target"]["type"],
        target_value=case["metric_target"]["value"],
        health=health,
        current_replicas=case["current_replicas"],
        ready_replicas=case["current_replicas"],
    )
    expect = case["expect"]
    if "metric_values" in expect:
        assert result.error is None
        assert result.values == pytest.approx(expect["metric_values"])
    if "error" in expect:
        assert result.error == expect["error"]
    if "health_after" in expect:
        after = health[case["metric_name"]]
        assert (after.failures, after.status) == (expect["health_after"]["failures"], expect["health_after"]["status"])
    if "fallback_condition_is_true" in expect:
        before_true = case["fallback_condition_before"] == "True"
        condition = before_true if result.condition is None else result.condition
        assert condition is expect["fallback_condition_is_true"]


# --------------------------------------------------------------------------- scaling modifiers


@pytest.mark.parametrize("case", cases("scaling_modifier_formula_cases"))
def test_keda_scaling_modifier_formula(case):
    triggers = {m["trigger"] for m in case["metrics"]}
    formula = None if case["formula"] is None else compile_formula(case["formula"], triggers)
    fb = case["fallback"]
    spec = None if fb is None else FallbackSpec(fb["failure_threshold"], fb["replicas"], fb.get("behavior", ""))
    health = {k: Health(v["failures"], v["status"]) for k, v in case["health"].items()}
    pairs: dict[str, str] = {}
    for m in case["metrics"]:
        pairs.update(get_pair_trigger_and_metric(case["formula"], m["metric_name"], m["trigger"]))
    metrics = [(m["metric_name"], m["value"]) for m in case["metrics"]]
    expect = case["expect"]
    if expect.get("error"):
        with pytest.raises(ModifierError):
            calculate_formula(formula, metrics, pairs, spec, health, case["target"])
        return
    value = calculate_formula(formula, metrics, pairs, spec, health, case["target"])
    assert expect["metric_name"] == COMPOSITE_METRIC_NAME
    if "milli_value" in expect:
        assert int(round(value * 1000)) == expect["milli_value"]
    if "value" in expect:
        assert value == pytest.approx(expect["value"])


@pytest.mark.parametrize("case", cases("scaling_modifier_trigger_value_cases"))
def test_keda_scaling_modifier_trigger_value(case):
    fb = case["fallback"]
    spec = None if fb is None else FallbackSpec(fb["failure_threshold"], fb["replicas"], fb.get("behavior", ""))
    health = None if case["health"] is None else Health(case["health"]["failures"], case["health"]["status"])
    assert scaling_modifier_trigger_value(case["metric_value"], spec, health) == case["expect_value"]


@pytest.mark.parametrize("case", cases("scaling_modifier_pair_cases"))
def test_keda_scaling_modifier_pair(case):
    if case["expect_error"]:
        with pytest.raises(ModifierError):
            get_pair_trigger_and_metric(case["formula"], case["metric"], case["trigger_name"])
    else:
        assert get_pair_trigger_and_metric(case["formula"], case["metric"], case["trigger_name"]) == case["expect_pairs"]


@pytest.mark.parametrize("case", cases("metric_name_match_cases"))
def test_keda_metric_name_match(case):
    assert array_contains_element(case["element"], case["array"]) is case["expect"]
