"""KEDA ScaledJob: how many Jobs to create each polling tick (no HPA involved).

From ``apis/keda/v1alpha1/scaledjob_types.go``, ``pkg/scaling/scaledjob/metrics.go`` and
``pkg/scaling/executor/scale_jobs.go``. Each tick: per scaler a queue length and a "max
value" (queue / target, capped), combined across scalers by ``multipleScalersCalculation``;
then a *scaling strategy* turns ``(maxScale, running, pending)`` into the number of Jobs to
create. Jobs run to completion on their own, so this is a planner, not a replica policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_REPLICA_COUNT = 100
STRATEGIES = ("default", "custom", "accurate", "eager")


# --------------------------------------------------------------------------- replica counts


def min_replica_count(min_count: int | None, max_count: int | None) -> int:
    """``ScaledJob.MinReplicaCount()``: unset is 0, and never above the max."""
    if min_count is None:
        return 0
    cap = DEFAULT_MAX_REPLICA_COUNT if max_count is None else max_count
    return cap if min_count > cap else min_count


def max_replica_count(min_count: int | None, max_count: int | None) -> int:
    """``ScaledJob.MaxReplicaCount()``: the headroom *above* min (``max - min``), 100 if unset,
    and ``max`` itself when min exceeds it."""
    if max_count is None:
        return DEFAULT_MAX_REPLICA_COUNT
    if min_count is not None and min_count > max_count:
        return max_count
    return max_count - min_replica_count(min_count, max_count)


# --------------------------------------------------------------------------- strategies


def _parse_go_float(text: str | None) -> float | None:
    if text is None or text != text.strip() or not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def select_strategy(strategy: str, queue_length_deduction: int | None, running_job_percentage: str | None) -> str:
    """``NewScalingStrategy``: ``custom`` only with a parsable percentage; unknown -> default."""
    if strategy == "custom":
        return "custom" if _parse_go_float(running_job_percentage) is not None else "default"
    if strategy in ("accurate", "eager"):
        return strategy
    return "default"


def effective_max_scale(strategy: str, queue_length_deduction: int | None, running_job_percentage: str | None,
                        max_scale: int, running: int, pending: int, max_replicas: int,
                        scale_to: int) -> tuple[int, int]:
    """``GetEffectiveMaxScale``: ``(effective max scale, scale to)`` of the selected strategy."""
    chosen = select_strategy(strategy, queue_length_deduction, running_job_percentage)
    if chosen == "custom":
        percentage = _parse_go_float(running_job_percentage) or 0.0
        deduction = queue_length_deduction or 0
        return min(max_scale - deduction - int(running * percentage), max_replicas), scale_to
    if chosen == "accurate":
        if max_scale + running - pending > max_replicas:
            return max_replicas - running, scale_to
        return max_scale - pending, scale_to
    if chosen == "eager":
        return min(max_replicas - running - pending, max_scale), max_replicas
    return max_scale - running, scale_to


@dataclass(frozen=True, slots=True)
class ScaledJobSpec:
    """The ScaledJob fields the planner reads (KEDA names in snake case)."""

    min_replica_count: int | None = None
    max_replica_count: int | None = None
    strategy: str = ""
    custom_scaling_queue_length_deduction: int | None = None
    custom_scaling_running_job_percentage: str | None = None
    multiple_scalers_calculation: str = ""

    @property
    def min_fn(self) -> int:
        return min_replica_count(self.min_replica_count, self.max_replica_count)

    @property
    def max_fn(self) -> int:
        return max_replica_count(self.min_replica_count, self.max_replica_count)


def scaling_decision(job: ScaledJobSpec, running: int, pending: int, scale_to: int, max_scale: int) -> tuple[int, int]:
    """``(effective max scale, scale to)`` before Job creation (scale_jobs.go)."""
    if running < job.min_fn:
        # Below min: top up to min, whatever the metrics say.
        needed = job.min_fn - running
        return needed, needed
    effective, target = effective_max_scale(
        job.strategy, job.custom_scaling_queue_length_deduction, job.custom_scaling_running_job_percentage,
        max_scale, running - job.min_fn, pending, job.max_fn, scale_to)
    return max(effective, 0), target


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class ScalerMetrics:
    """One scaler's contribution: queue length, capped queue/target, activity."""

    queue_length: float
    max_value: float
    is_active: bool


def target_average_value(targets: Sequence[float]) -> float:
    """Mean ``averageValue`` over a scaler's metric specs (0 without specs)."""
    return sum(targets) / len(targets) if targets else 0.0


def scaler_metrics(values: Sequence[float], targets: Sequence[float], is_active: bool, max_fn: int) -> ScalerMetrics:
    """``queueLength = sum(values)``; ``maxValue = min(queue / target, MaxReplicaCount())``."""
    queue = float(sum(values))
    target = target_average_value(targets)
    max_value = min(queue / target, float(max_fn)) if target != 0 else 0.0
    return ScalerMetrics(queue, max_value, is_active)


def is_scaled_job_active(scalers: Sequence[ScalerMetrics], calculation: str, min_fn: int,
                         max_fn: int) -> tuple[bool, int, int]:
    """``IsScaledJobActive``: ``(isActive, ceil(queueLength), ceil(maxValue))`` over scalers."""
    queue = 0.0
    max_value = 0.0
    active = False
    if calculation == "min":
        for s in scalers:
            if s.is_active and (queue == 0 or s.queue_length < queue):
                queue, max_value, active = s.queue_length, s.max_value, True
    elif calculation in ("avg", "sum"):
        chosen = [s for s in scalers if s.is_active]
        if chosen:
            active = True
            queue = sum(s.queue_length for s in chosen)
            max_value = sum(s.max_value for s in chosen)
            if calculation == "avg":
                queue /= len(chosen)
                max_value /= len(chosen)
    else:  # "max" and anything else
        for s in scalers:
            # Strictly greater than the running best (starting at 0): an active scaler with
            # an empty queue is never picked and does not make the job active.
            if s.is_active and s.queue_length > queue:
                queue, max_value, active = s.queue_length, s.max_value, True
    if min_fn > 0:
        active = True
    max_value = min(max_value, float(max_fn))
    return active, math.ceil(queue), math.ceil(max_value)


def jobs_to_create(job: ScaledJobSpec, scalers: Sequence[ScalerMetrics], running: int, pending: int) -> int:
    """The Jobs one polling tick creates: ``min(scaleTo, effectiveMaxScale)`` when active."""
    active, scale_to, max_scale = is_scaled_job_active(scalers, job.multiple_scalers_calculation, job.min_fn,
                                                       job.max_fn)
    effective, scale_to = scaling_decision(job, running, pending, scale_to, max_scale)
    if not active or effective <= 0:
        return 0
    return min(scale_to, effective)
