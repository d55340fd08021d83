"""From configuration to decider inputs: metric targets, windows and initial scale.

Upstream ``pkg/reconciler/autoscaling/resources`` (``target.go``, ``metric.go``) and
``kpa/resources/decider.go``. Each function takes the cluster default and the per-revision
override (``None`` = annotation absent) so the resolution order is the upstream one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidal.policy.kpa.gomath import SECOND_NS, round_duration_to_seconds, seconds_to_ns

#: Smallest per-pod target (upstream ``autoscaling.TargetMin``).
TARGET_MIN = 0.01
#: Metric bucket granularity (upstream ``config.BucketSize``).
BUCKET_SIZE = 1.0
#: Utilisation applied to the RPS target (upstream ``defaultTargetUtilization``).
DEFAULT_RPS_TARGET_UTILIZATION = 0.7


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """Per-pod ``target`` (what the decider divides by) and ``total`` (per-pod capacity)."""

    target: float
    total: float


def resolve_metric_target(
    *,
    metric: str = "concurrency",
    container_concurrency: int = 0,
    container_concurrency_target_fraction: float = 0.7,
    container_concurrency_target_default: float = 100.0,
    rps_target_default: float = 200.0,
    target_utilization: float = DEFAULT_RPS_TARGET_UTILIZATION,
    target_annotation: float | None = None,
    target_utilization_percentage_annotation: float | None = None,
) -> MetricTarget:
    """Upstream ``ResolveMetricTarget``.

    For ``rps`` the total is the RPS default at 70 % utilisation; for concurrency it is the
    container concurrency (hard limit) if set, else the soft default, at the configured
    percentage. A ``target`` annotation replaces the total, but never above a hard container
    concurrency; a utilisation annotation replaces the fraction. The target is never below 0.01.
    """
    if metric == "rps":
        total = rps_target_default
        utilization = target_utilization
    else:
        total = float(container_concurrency) if container_concurrency != 0 else container_concurrency_target_default
        utilization = container_concurrency_target_fraction
    if target_annotation is not None:
        total = target_annotation
        if metric != "rps" and container_concurrency != 0:
            total = min(total, float(container_concurrency))
    if target_utilization_percentage_annotation is not None:
        utilization = target_utilization_percentage_annotation / 100.0
    return MetricTarget(target=max(TARGET_MIN, total * utilization), total=total)


def stable_window(config_stable_window: float, window_annotation: float | None = None) -> float:
    """The stable window: the revision's ``window`` annotation, else the cluster default."""
    return config_stable_window if window_annotation is None else window_annotation


def panic_window(stable_window_s: float, panic_window_percentage: float) -> float:
    """``stable x pct / 100`` rounded to whole seconds (halves away), at least one bucket.

    Computed on integer nanoseconds like Go's ``time.Duration`` (60 s at 51 % is 30.6 s -> 31 s).
    """
    ns = int(seconds_to_ns(stable_window_s) * panic_window_percentage / 100.0)
    rounded = round_duration_to_seconds(ns) / SECOND_NS
    return max(rounded, BUCKET_SIZE)


def initial_scale(config_initial_scale: int, allow_zero_initial_scale: bool, annotation: int | None = None) -> int:
    """Upstream ``GetInitialScale``: the annotation unless absent, or 0 while zero is not allowed."""
    if annotation is None or (annotation == 0 and not allow_zero_initial_scale):
        return config_initial_scale
    return annotation
