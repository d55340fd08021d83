"""KEDA scaling modifiers (``pkg/scaling/modifiers/formula.go``).

With ``advanced.scalingModifiers`` the external metrics of all triggers are combined by a
formula over the trigger names into one metric, ``composite-metric``, that replaces them in the
HPA; activity becomes ``composite > activationTarget``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tidal.policy.keda.expr import ExprError, Formula
from tidal.policy.keda.fallback import FallbackSpec, Health

COMPOSITE_METRIC_NAME = "composite-metric"


class ModifierError(ValueError):
    """The composite metric could not be computed."""


def array_contains_element(element: str, array: Sequence[str]) -> bool:
    """``ArrayContainsElement``: case-insensitive membership (Go ``strings.EqualFold``)."""
    folded = element.casefold()
    return any(item.casefold() == folded for item in array)


def get_pair_trigger_and_metric(formula: str | None, metric: str, trigger: str) -> dict[str, str]:
    """``GetPairTriggerAndMetric``: ``{metric: trigger}`` when a formula is set, else ``{}``.

    A formula needs every metric to belong to a named trigger.
    """
    if not formula:
        return {}
    if not trigger:
        raise ModifierError(f"trigger name not given with compositeScaler for metric {metric}")
    return {metric: trigger}


def scaling_modifier_trigger_value(value: float, fallback: FallbackSpec | None, health: Health | None) -> float | None:
    """The formula variable for one metric: its value, or ``None`` (nil) when the fallback
    behaviour is ``scalingModifiers`` and the metric has failed more than ``failureThreshold``
    times in a row (the gate is strict ``>``)."""
    if fallback is None or fallback.behavior != "scalingModifiers" or health is None:
        return value
    if health.failures > fallback.failure_threshold:
        return None
    return value


def calculate_formula(
    formula: Formula | None,
    metrics: Sequence[tuple[str, float]],
    pairs: Mapping[str, str],
    fallback: FallbackSpec | None,
    health: Mapping[str, Health],
    target: str | None,
) -> float:
    """``calculateScalingModifiersFormula``: the composite metric's value (milli-truncated).

    ``metrics`` are ``(metric name, value)``; ``pairs`` maps a metric name to its trigger name.
    A nil result means every source failed: use ``fallback.replicas x target`` so the HPA
    lands on the fallback count (an error without a fallback).
    """
    if formula is None:
        raise ModifierError("cached compiled formula is nil during its calculation")
    env = {pairs.get(name, ""): scaling_modifier_trigger_value(value, fallback, health.get(name))
           for name, value in metrics}
    try:
        result = formula.run(env)
    except ExprError as exc:
        raise ModifierError(f"error trying to run custom formula: {exc}") from None
    if result is None:
        if fallback is None:
            raise ModifierError("formula evaluated to nil and no fallback is configured")
        try:
            target_value = float(target or "")
        except ValueError:
            raise ModifierError(f"scalingModifiers.target {target!r} is not a number") from None
        result = fallback.replicas * target_value
    if isinstance(result, bool) or not isinstance(result, (int, float)):
        # KEDA wraps the formula in float(...); anything that is not a number is an error.
        raise ModifierError(f"formula returned a {type(result).__name__}, expected a number")
    if not math.isfinite(result):
        raise ModifierError(f"formula returned {result}, expected a finite number")
    return int(float(result) * 1000) / 1000.0
