"""The slice of the Kubernetes HPA that KEDA's 1 <-> N scaling runs on.

KEDA does not size a workload between 1 and N itself: it generates an HPA with one External
metric per trigger (AverageValue or Value targets) and serves the values. This module is a
*local stand-in* for that HPA -- replica proposals for External (and simplified Resource)
metrics, the multi-metric rules, and the normalisation (stabilisation, scale-up limit or
``behavior`` rate policies) -- written from ``k8s: pkg/controller/podautoscaler/
replica_calculator.go`` and ``horizontal.go``. The shared HPA lives in ``tidal.policy.hpa``;
the lead will point this module at it, and its names mirror Kubernetes' so the swap is local.

Simplification: Resource (cpu/memory) proposals use the ready pods that have usage samples and
skip the HPA's missing-pod and not-yet-ready-pod corrections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tidal.policy.keda.config import HPABehavior, HPAScalingPolicy, HPAScalingRules

#: Kubernetes' default HPA tolerance (``--horizontal-pod-autoscaler-tolerance``).
TOLERANCE = 0.1
#: Controller default downscale stabilisation window (``--horizontal-pod-autoscaler-downscale-stabilization``).
DOWNSCALE_STABILIZATION_S = 300.0


def within_tolerance(ratio: float, down: float = TOLERANCE, up: float = TOLERANCE) -> bool:
    """``Tolerances.isWithin``: ``1 - down <= ratio <= 1 + up`` (NaN is never within)."""
    return (1.0 - down) <= ratio <= (1.0 + up)


def _ratio(numerator: float, denominator: float) -> float:
    # Go float division: x/0 = +Inf, 0/0 = NaN.
    if denominator == 0:
        return math.nan if numerator == 0 else math.inf
    return numerator / denominator


# --------------------------------------------------------------------------- proposals


def external_average_value_replicas(usage_milli: int, target_milli: int, status_replicas: int,
                                    down: float = TOLERANCE, up: float = TOLERANCE) -> int:
    """``GetExternalPerPodMetricReplicas``: ``ceil(usage / target)`` unless within tolerance
    of ``usage / (target x statusReplicas)``; the replica count only enters the tolerance test."""
    ratio = _ratio(float(usage_milli), float(target_milli) * status_replicas)
    if within_tolerance(ratio, down, up):
        return status_replicas
    return math.ceil(usage_milli / target_milli)


def external_value_replicas(usage_milli: int, target_milli: int, current_replicas: int, ready_pods: int,
                            down: float = TOLERANCE, up: float = TOLERANCE) -> int:
    """``GetExternalMetricReplicas`` -> ``getUsageRatioReplicaCount``: ``ceil(ratio x readyPods)``."""
    ratio = usage_milli / target_milli
    if current_replicas == 0:
        return math.ceil(ratio)
    if within_tolerance(ratio, down, up):
        return current_replicas
    return math.ceil(ratio * ready_pods)


def resource_replicas(usages: list[float], requests: list[float], target: float, metric_type: str,
                      current_replicas: int, down: float = TOLERANCE, up: float = TOLERANCE) -> int | None:
    """Simplified ``GetResourceReplicas`` / ``GetRawResourceReplicas`` over ready pods with
    samples: Utilization is ``sum(usage) / sum(request) x 100`` against a percent target,
    AverageValue the mean usage against a per-pod target. ``None`` without samples."""
    if not usages:
        return None
    if metric_type == "Utilization":
        total_request = sum(requests)
        if total_request <= 0:
            return None
        ratio = (sum(usages) * 100.0 / total_request) / target
    else:
        ratio = (sum(usages) / len(usages)) / target
    if within_tolerance(ratio, down, up):
        return current_replicas
    return math.ceil(ratio * len(usages))


def combine_proposals(proposals: list[int], invalid: int, spec_replicas: int) -> int | None:
    """``computeReplicasForMetrics``: the max over valid metrics; ``None`` (keep the current
    size) if every metric is invalid, or some are and the others would scale down."""
    if not proposals:
        return None
    best = max(proposals)
    if invalid > 0 and best < spec_replicas:
        return None
    return best


# --------------------------------------------------------------------------- behavior

_DEFAULT_UP_POLICIES = (HPAScalingPolicy(type="Pods", value=4, periodSeconds=15),
                        HPAScalingPolicy(type="Percent", value=100, periodSeconds=15))
_DEFAULT_DOWN_POLICIES = (HPAScalingPolicy(type="Percent", value=100, periodSeconds=15),)


@dataclass(frozen=True, slots=True)
class Rules:
    """``HPAScalingRules`` with Kubernetes' defaults filled in."""

    stabilization_s: float
    select_policy: str
    policies: tuple[HPAScalingPolicy, ...]
    tolerance: float


def resolve_behavior(behavior: HPABehavior | None, pause_in: bool, pause_out: bool) -> tuple[Rules, Rules] | None:
    """Defaults of ``autoscaling/v2`` behavior, with KEDA's paused-scale-in/out annotations
    setting ``selectPolicy: Disabled``. ``None`` = no behavior (legacy normalisation)."""
    if behavior is None and not pause_in and not pause_out:
        return None
    up = (behavior.scaleUp if behavior else None) or HPAScalingRules()
    down = (behavior.scaleDown if behavior else None) or HPAScalingRules()
    up_rules = Rules(
        float(up.stabilizationWindowSeconds or 0),
        "Disabled" if pause_out else (up.selectPolicy or "Max"),
        tuple(up.policies) if up.policies else _DEFAULT_UP_POLICIES,
        TOLERANCE if up.tolerance is None else up.tolerance,
    )
    down_rules = Rules(
        DOWNSCALE_STABILIZATION_S if down.stabilizationWindowSeconds is None else float(down.stabilizationWindowSeconds),
        "Disabled" if pause_in else (down.selectPolicy or "Max"),
        tuple(down.policies) if down.policies else _DEFAULT_DOWN_POLICIES,
        TOLERANCE if down.tolerance is None else down.tolerance,
    )
    return up_rules, down_rules


@dataclass
class HPAState:
    """The controller's memory for one HPA: recommendations and (with behavior) scale events."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)
    #: Whether the first sync has recorded the initial size (``recordInitialRecommendation``).
    initialized: bool = False

    def to_json(self) -> dict:
        return {"recommendations": [list(r) for r in self.recommendations],
                "up_events": [list(e) for e in self.up_events],
                "down_events": [list(e) for e in self.down_events],
                "initialized": self.initialized}

    @classmethod
    def from_json(cls, data: dict) -> HPAState:
        def pairs(key: str) -> list[tuple[float, int]]:
            return [(float(t), int(n)) for t, n in data.get(key, [])]

        return cls(pairs("recommendations"), pairs("up_events"), pairs("down_events"),
                   bool(data.get("initialized", False)))

    def record_initial(self, current: int, now: float) -> None:
        """``recordInitialRecommendation``: the first sync remembers the current size, which is
        why a new HPA does not scale down within its first stabilisation window."""
        if not self.initialized:
            self.initialized = True
            self.recommendations.append((now, current))

    def prune(self, now: float, horizon_s: float) -> None:
        cutoff = now - horizon_s
        self.recommendations = [r for r in self.recommendations if r[0] >= cutoff]
        self.up_events = [e for e in self.up_events if e[0] >= cutoff]
        self.down_events = [e for e in self.down_events if e[0] >= cutoff]


def _change_in_period(events: list[tuple[float, int]], now: float, period_s: float) -> int:
    cutoff = now - period_s
    return sum(n for t, n in events if t > cutoff)


def _scale_up_limit(current: int, state: HPAState, rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = min if rules.select_policy == "Min" else max
    result: int | None = None
    for policy in rules.policies:
        start = (current - _change_in_period(state.up_events, now, policy.periodSeconds)
                 + _change_in_period(state.down_events, now, policy.periodSeconds))
        if policy.type == "Pods":
            proposed = start + policy.value
        else:  # rounded up so a small percentage can still add a replica
            proposed = math.ceil(start * (1 + policy.value / 100.0))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def _scale_down_limit(current: int, state: HPAState, rules: Rules, now: float) -> int:
    if rules.select_policy == "Disabled":
        return current
    pick = max if rules.select_policy == "Min" else min
    result: int | None = None
    for policy in rules.policies:
        start = (current - _change_in_period(state.up_events, now, policy.periodSeconds)
                 + _change_in_period(state.down_events, now, policy.periodSeconds))
        if policy.type == "Pods":
            proposed = start - policy.value
        else:
            proposed = int(start * (1 - policy.value / 100.0))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def normalize(desired: int, current: int, hpa_min: int, hpa_max: int, behavior: tuple[Rules, Rules] | None,
              state: HPAState, now: float) -> int:
    """Stabilise and limit a raw proposal, recording it (``normalizeDesiredReplicas[WithBehaviors]``)."""
    if behavior is None:
        # Legacy: max of the last 5 minutes' proposals, then at most max(2 x current, 4).
        cutoff = now - DOWNSCALE_STABILIZATION_S
        stabilized = max([desired] + [r for t, r in state.recommendations if t >= cutoff])
        state.recommendations.append((now, desired))
        limit = max(2 * current, 4)
        allowed_max = min(hpa_max, limit)
        return min(max(stabilized, hpa_min), allowed_max)
    up, down = behavior
    up_rec = desired
    down_rec = desired
    for t, r in state.recommendations:
        if t > now - up.stabilization_s:
            up_rec = min(up_rec, r)
        if t > now - down.stabilization_s:
            down_rec = max(down_rec, r)
    stabilized = min(max(current, up_rec), down_rec)
    state.recommendations.append((now, desired))
    if stabilized > current:
        limit = max(_scale_up_limit(current, state, up, now), current)
        return min(stabilized, hpa_max, limit)
    if stabilized < current:
        limit = min(_scale_down_limit(current, state, down, now), current)
        return max(stabilized, hpa_min, limit)
    return stabilized


def record_scale_event(state: HPAState, before: int, after: int, now: float) -> None:
    """``storeScaleEvent`` (only used with a behavior): the change feeds the rate policies."""
    if after > before:
        state.up_events.append((now, after - before))
    elif after < before:
        state.down_events.append((now, before - after))
