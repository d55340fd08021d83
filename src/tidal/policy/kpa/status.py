"""PodAutoscaler status after a reconcile: Active condition, SKS mode and activator count.

Upstream ``pkg/reconciler/autoscaling/kpa/kpa.go`` (``computeStatus``, ``computeActiveCondition``,
``activeThreshold``, ``computeNumActivators`` and the SKS mode choice in ``ReconcileKind``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tidal.policy.kpa.scaler import SCALE_UNKNOWN, ActiveStatus, PAStatus, SKSMode

#: The activator is always at least this redundant (upstream ``minActivators``).
MIN_ACTIVATORS = 2


def compute_num_activators(ready: int, total_value: float, target_burst_capacity: float,
                           activator_capacity: float) -> int:
    """Activators needed to absorb ``ready x total`` plus the burst capacity (at least 2)."""
    if target_burst_capacity == 0:
        return MIN_ACTIVATORS
    capacity = ready * total_value
    if target_burst_capacity > 0:
        capacity += target_burst_capacity
    return int(max(MIN_ACTIVATORS, math.ceil(capacity / activator_capacity)))


def sks_mode(want: int, excess_burst_capacity: int, pa_inactive: bool) -> SKSMode:
    """Proxy (activator in the path) at zero, with negative burst capacity, or when an
    autoscaler without a recommendation finds the PA already inactive; else Serve."""
    if want == 0 or excess_burst_capacity < 0 or (want == SCALE_UNKNOWN and pa_inactive):
        return "Proxy"
    return "Serve"


def status_desired_scale(have: int | None, want: int) -> int | None:
    """``Status.DesiredScale``: a ``-1`` never overwrites a known non-negative scale (restart guard)."""
    if want == SCALE_UNKNOWN and have is not None and have >= 0:
        return have
    return want


def active_threshold(min_scale: int, initial_scale: int, scale_target_initialized: bool) -> int:
    """Ready pods needed to call the PA Active: the initial scale until first reached, then 1."""
    if not scale_target_initialized:
        return max(min_scale, initial_scale)
    return max(min_scale, 1)


@dataclass(frozen=True, slots=True)
class ActiveCondition:
    """The PA's Active condition with its reason, as the next reconcile will read it."""

    status: PAStatus
    reason: str = ""


def _mark(cond: ActiveCondition, status: ActiveStatus, reason: str, now: float) -> ActiveCondition:
    pa = cond.status
    if pa.active == status and cond.reason == reason:
        return cond  # unchanged conditions keep their transition time
    return ActiveCondition(replace(pa, active=status, active_since=now), reason)


def compute_active_condition(cond: ActiveCondition, *, want: int, ready: int, min_scale: int,
                             initial_scale: int, now: float) -> ActiveCondition:
    """Upstream ``computeActiveCondition`` (the service is assumed to exist)."""
    pa = cond.status
    min_ready = active_threshold(min_scale, initial_scale, pa.scale_target_initialized)
    if ready >= min_ready and not pa.scale_target_initialized:
        cond = ActiveCondition(replace(pa, scale_target_initialized=True), cond.reason)
        pa = cond.status
    if want == 0 or min_ready == 0:
        timed_out = pa.active == "Unknown" and min_ready > 0
        return _mark(cond, "False", "TimedOut" if timed_out else "NoTraffic", now)
    if ready < min_ready:
        if want > 0 or pa.active != "False":
            return _mark(cond, "Unknown", "Queued", now)
        return _mark(cond, "False", "NoTraffic", now)
    if want > 0 or pa.active != "False":
        return _mark(cond, "True", "", now)
    return cond
