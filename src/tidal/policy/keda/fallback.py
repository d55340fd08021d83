"""KEDA fallback (``pkg/fallback/fallback.go`` ``GetMetricsWithFallback``).

Per external metric KEDA keeps ``status.health[metric] = {numberOfFailures, status}``. Every
metric query (a polling tick *and* every HPA request) goes through here: a success resets the
health, an error increments it, and once ``failures > failureThreshold`` the error is replaced
by a synthetic value ``target x replicas`` so the HPA lands on the fallback replica count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HAPPY = "Happy"
FAILING = "Failing"


@dataclass(slots=True)
class Health:
    """``status.health[metric]``."""

    failures: int = 0
    status: str = HAPPY


@dataclass(frozen=True, slots=True)
class FallbackSpec:
    """``spec.fallback``. ``behavior`` "" is Go's zero value (acts like static but reads replicas)."""

    failure_threshold: int
    replicas: int
    behavior: str = "static"


@dataclass(frozen=True, slots=True)
class ModifiersView:
    """What fallback needs to know about ``advanced.scalingModifiers`` (``in_use`` False = none)."""

    in_use: bool = False
    target: str = ""
    metric_type: str = "AverageValue"


@dataclass(frozen=True, slots=True)
class FallbackResult:
    """``(metrics, fallbackActive, error)`` of ``GetMetricsWithFallback``."""

    values: list[float] = field(default_factory=list)
    fallback_active: bool = False
    error: str | None = None
    metric_name: str = ""
    #: The Fallback condition after this call: True/False, or None when left unchanged.
    condition: bool | None = None


def has_valid_fallback(fallback: FallbackSpec, modifiers: ModifiersView) -> bool:
    """``HasValidFallback``: non-negative numbers, and an integer target > 0 with modifiers."""
    modifier_ok = True
    if modifiers.in_use:
        try:
            modifier_ok = int(modifiers.target.strip(), 10) > 0
        except ValueError:
            modifier_ok = False
    return fallback.failure_threshold >= 0 and fallback.replicas >= 0 and modifier_ok


def fallback_exceeded(health: dict[str, Health], failure_threshold: int) -> bool:
    """The Fallback condition: some metric is Failing with ``failures > failureThreshold``."""
    return any(h.status == FAILING and h.failures > failure_threshold for h in health.values())


def get_metrics_with_fallback(
    *,
    metric_name: str,
    values: list[float] | None,
    error: str | None,
    fallback: FallbackSpec | None,
    modifiers: ModifiersView,
    target_type: str,
    target_value: float,
    health: dict[str, Health],
    current_replicas: int | None,
    ready_replicas: int | None,
) -> FallbackResult:
    """Apply fallback to one metric query; mutates ``health`` the way KEDA patches status.

    ``current_replicas`` / ``ready_replicas`` are the scale target's spec and ready counts, or
    ``None`` when they cannot be read (then the behaviours that need them fail).
    """
    configured = fallback is not None and has_valid_fallback(fallback, modifiers)
    if error is None:
        if configured:
            assert fallback is not None
            health[metric_name] = Health(0, HAPPY)
            return FallbackResult(list(values or []), False, None, metric_name,
                                  fallback_exceeded(health, fallback.failure_threshold))
        return FallbackResult(list(values or []), False, None, metric_name)
    if not configured:
        # No (valid) fallback: the error goes to the caller and health is left untouched.
        return FallbackResult([], False, error, metric_name)
    assert fallback is not None
    entry = health.get(metric_name) or Health()
    health[metric_name] = Health(entry.failures + 1, FAILING)
    condition = fallback_exceeded(health, fallback.failure_threshold)
    if health[metric_name].failures <= fallback.failure_threshold:
        return FallbackResult([], False, error, metric_name, condition)
    if fallback.behavior == "scalingModifiers":
        # A placeholder the formula evaluator treats as nil, so `a ?? b` picks the next source.
        return FallbackResult([-1.0], False, None, metric_name, condition)
    if fallback.behavior != "static":
        if current_replicas is None:
            return FallbackResult([], False, error, metric_name, condition)
    value = _fallback_value(fallback, modifiers, target_type, target_value, current_replicas or 0, ready_replicas)
    if value is None:
        return FallbackResult([], False, "error performing fallback", metric_name, condition)
    name = "composite-metric" if modifiers.in_use else metric_name
    return FallbackResult([value], True, None, name, condition)


def fallback_replicas(fallback: FallbackSpec, current_replicas: int) -> int:
    """The replica count a fallback behaviour asks for."""
    if fallback.behavior == "currentReplicas":
        return current_replicas
    if fallback.behavior == "currentReplicasIfHigher":
        return max(current_replicas, fallback.replicas)
    if fallback.behavior == "currentReplicasIfLower":
        return min(current_replicas, fallback.replicas)
    return fallback.replicas  # static, and Go's "" default branch


def _fallback_value(fallback: FallbackSpec, modifiers: ModifiersView, target_type: str, target_value: float,
                    current_replicas: int, ready_replicas: int | None) -> float | None:
    replicas = float(fallback_replicas(fallback, current_replicas))
    value_type = modifiers.metric_type if modifiers.in_use else target_type
    if value_type == "Value":
        # The HPA multiplies a Value metric by the ready pods; divide so it lands on `replicas`.
        if not ready_replicas:
            return None
        replicas /= ready_replicas
    normalisation = float(modifiers.target) if modifiers.in_use else target_value
    return int(normalisation * 1000 * replicas) / 1000.0
