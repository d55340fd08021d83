"""From the metrics' proposal to the replica count to set: stabilization and rate limits.

Two paths, as in ``horizontal.go``: without ``spec.behavior`` the legacy rules of spec §5 (a
downscale stabilization window and a per-sync scale-up cap); with it, the ``behavior`` API of §6
(windows per direction and Pods/Percent policies over the scale-event history).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tidal.policy.hpa.behavior import DISABLED, MIN, PERCENT, PODS, Behavior, ScalingRules
from tidal.policy.hpa.history import (
    HPAState,
    ScaleEvent,
    replicas_change_per_period,
    stabilize_recommendation,
    stabilize_recommendation_with_behaviors,
)
from tidal.policy.hpa.numeric import MAX_INT32, MIN_INT32, ceil_int32, clamp_int32, trunc_int32

DESIRED_WITHIN_RANGE = "DesiredWithinRange"


@dataclass(frozen=True, slots=True)
class Normalized:
    """The count to set, the stabilized value before rate limits, and the limiting reasons."""

    replicas: int
    stabilized: int
    stabilization_reason: str
    limit_reason: str


# --------------------------------------------------------------------------- no behavior (§5)


def convert_desired_replicas_with_rules(current: int, desired: int, min_replicas: int, max_replicas: int,
                                        scale_up_limit_factor: float = 2.0,
                                        scale_up_limit_minimum: float = 4.0) -> tuple[int, str]:
    """``convertDesiredReplicasWithRules``: clamp to ``[min, min(max, max(factor*current, minimum))]``."""
    scale_up_limit = trunc_int32(max(scale_up_limit_factor * float(current), scale_up_limit_minimum))
    if max_replicas > scale_up_limit:
        maximum, reason = scale_up_limit, "ScaleUpLimit"
    else:
        maximum, reason = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > maximum:
        return maximum, reason
    return desired, DESIRED_WITHIN_RANGE


def normalize_desired_replicas(state: HPAState, current: int, prenormalized: int, min_replicas: int,
                               max_replicas: int, now: float, downscale_window: float,
                               scale_up_limit_factor: float = 2.0, scale_up_limit_minimum: float = 4.0) -> Normalized:
    """``normalizeDesiredReplicas``: §5.1 stabilization, then §5.2 rules."""
    stabilized = stabilize_recommendation(state, prenormalized, downscale_window, now)
    stab_reason = "ScaleDownStabilized" if stabilized != prenormalized else "ReadyForNewScale"
    replicas, reason = convert_desired_replicas_with_rules(current, stabilized, min_replicas, max_replicas,
                                                           scale_up_limit_factor, scale_up_limit_minimum)
    return Normalized(replicas, stabilized, stab_reason, reason)


# --------------------------------------------------------------------------- behavior (§6)


def _period_start(current: int, period: int, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent],
                  now: float) -> int:
    # Rebuild the count at the start of the policy's own period from both histories.
    return (current - replicas_change_per_period(period, up_events, now)
            + replicas_change_per_period(period, down_events, now))


def scale_up_limit(current: int, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent],
                   rules: ScalingRules, now: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``: Max picks the largest limit, Min the smallest."""
    if rules.select_policy == DISABLED:
        return current
    pick_min = rules.select_policy == MIN
    result = MAX_INT32 if pick_min else MIN_INT32
    for policy in rules.policies or ():
        start = _period_start(current, policy.period_seconds, up_events, down_events, now)
        if policy.type == PODS:
            proposed = clamp_int32(start + policy.value)
        elif policy.type == PERCENT:
            # Rounded up, or a small deployment could never grow.
            proposed = ceil_int32(float(start) * (1 + float(policy.value) / 100))
        else:
            continue
        result = min(result, proposed) if pick_min else max(result, proposed)
    return result


def scale_down_limit(current: int, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent],
                     rules: ScalingRules, now: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``: Max picks the lowest floor, Min the highest."""
    if rules.select_policy == DISABLED:
        return current
    pick_max = rules.select_policy == MIN
    result = MIN_INT32 if pick_max else MAX_INT32
    for policy in rules.policies or ():
        start = _period_start(current, policy.period_seconds, up_events, down_events, now)
        if policy.type == PODS:
            proposed = clamp_int32(start - policy.value)
        elif policy.type == PERCENT:
            proposed = trunc_int32(float(start) * (1 - float(policy.value) / 100))
        else:
            continue
        result = max(result, proposed) if pick_max else min(result, proposed)
    return result


def convert_desired_replicas_with_behavior_rate(current: int, desired: int, min_replicas: int, max_replicas: int,
                                                scale_up: ScalingRules, scale_down: ScalingRules,
                                                up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent],
                                                now: float) -> tuple[int, str]:
    """``convertDesiredReplicasWithBehaviorRate``: apply the direction's rate limit and the bounds."""
    if desired > current:
        limit = max(scale_up_limit(current, up_events, down_events, scale_up, now), current)
        if max_replicas > limit:
            allowed, reason = limit, "ScaleUpLimit"
        else:
            allowed, reason = max_replicas, "TooManyReplicas"
        if desired > allowed:
            return allowed, reason
    elif desired < current:
        limit = min(scale_down_limit(current, up_events, down_events, scale_down, now), current)
        if min_replicas < limit:
            allowed, reason = limit, "ScaleDownLimit"
        else:
            allowed, reason = min_replicas, "TooFewReplicas"
        if desired < allowed:
            return allowed, reason
    return desired, DESIRED_WITHIN_RANGE


def normalize_desired_replicas_with_behaviors(state: HPAState, behavior: Behavior, current: int, prenormalized: int,
                                              min_replicas: int, max_replicas: int, now: float,
                                              downscale_window: float) -> Normalized:
    """``normalizeDesiredReplicasWithBehaviors``: stabilize per direction, then rate-limit.

    ``behavior`` must be defaulted (both directions set); an unset scale-down window takes the
    controller's downscale-stabilization flag (``maybeInitScaleDownStabilizationWindow``).
    """
    up, down = behavior.scale_up, behavior.scale_down
    assert up is not None and down is not None, "behavior must be defaulted first"
    up_window = float(up.stabilization_window_seconds or 0)
    down_window = (downscale_window if down.stabilization_window_seconds is None
                   else float(down.stabilization_window_seconds))
    stabilized = stabilize_recommendation_with_behaviors(state, current, prenormalized, up_window, down_window, now)
    if stabilized == prenormalized:
        stab_reason = "ReadyForNewScale"
    else:
        stab_reason = "ScaleUpStabilized" if prenormalized >= current else "ScaleDownStabilized"
    replicas, reason = convert_desired_replicas_with_behavior_rate(
        current, stabilized, min_replicas, max_replicas, up, down,
        state.scale_up_events, state.scale_down_events, now)
    return Normalized(replicas, stabilized, stab_reason, reason)

