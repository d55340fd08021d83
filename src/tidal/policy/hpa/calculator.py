"""The per-metric replica calculator (``replica_calculator.go``, spec §4).

Every function works on plain values: the pods the target's selector returns, the samples or
values the metrics APIs returned, the target in milli-units (or percent), the tolerances and
``now``. Each returns a :class:`ReplicaProposal` or raises :class:`MetricError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.metrics import PodMetric, PodMetricsItem, resource_samples
from tidal.policy.hpa.numeric import MAX_INT32, MAX_INT64, Tolerances, ceil_int32, go_div, wrap_int64
from tidal.policy.hpa.pods import RUNNING, PodInfo, calculate_requests, group_pods


@dataclass(frozen=True, slots=True)
class ReplicaProposal:
    """One metric's proposal and what it observed.

    ``usage`` is the observed value in milli-units (plain metrics); resource utilization targets
    report ``utilization`` (integer percent of request) and ``raw_value`` (mean usage, milli).
    """

    replicas: int
    usage: int | None = None
    utilization: int | None = None
    raw_value: int | None = None


@dataclass(frozen=True, slots=True)
class CalculatorSettings:
    """The controller flags the calculator reads (spec §2)."""

    tolerances: Tolerances = Tolerances()
    cpu_initialization_period: float = 300.0
    delay_of_initial_readiness_status: float = 30.0
    pod_level_resources: bool = True


# --------------------------------------------------------------------------- ratio helpers


def resource_utilization_ratio(metrics: Mapping[str, PodMetric], requests: Mapping[str, int],
                               target_utilization: int) -> tuple[float, int, int]:
    """``GetResourceUtilizationRatio``: (ratio, utilization %, raw average) over pods with a request."""
    metrics_total = requests_total = entries = 0
    for pod, metric in metrics.items():
        request = requests.get(pod)
        if request is None:  # superfluous sample: no pod, no request
            continue
        metrics_total += metric.value
        requests_total += request
        entries += 1
    if requests_total == 0:
        raise MetricError("no metrics returned matched known pods")
    utilization = go_div(metrics_total * 100, requests_total)
    # The ratio is taken from the truncated integer percentage, as Go does.
    return float(utilization) / float(target_utilization), utilization, go_div(metrics_total, entries)


def metric_usage_ratio(metrics: Mapping[str, PodMetric], target: int) -> tuple[float, int]:
    """``GetMetricUsageRatio``: (ratio, mean usage) over every sample."""
    usage = go_div(sum(m.value for m in metrics.values()), len(metrics))
    return float(usage) / float(target), usage


def usage_ratio_replica_count(current_replicas: int, ratio: float, pods: Sequence[PodInfo],
                              tolerances: Tolerances) -> int:
    """``getUsageRatioReplicaCount``: scale the ready pods by ``ratio``; from zero, ``ceil(ratio)``."""
    if current_replicas == 0:
        return ceil_int32(ratio)
    if tolerances.is_within(ratio):
        return current_replicas
    replicas = ratio * ready_pods_count(pods)
    return MAX_INT32 if replicas > MAX_INT32 else ceil_int32(replicas)


def ready_pods_count(pods: Sequence[PodInfo]) -> int:
    """``getReadyPodsCount``: running pods whose Ready condition is true (deleting ones included)."""
    if not pods:
        raise MetricError("unable to calculate ready pods: "
                          "no pods returned by selector while calculating replica count")
    return sum(1 for p in pods if p.phase == RUNNING and p.ready is True)


# --------------------------------------------------------------------------- resource metrics


def _resource_metrics(items: Sequence[PodMetricsItem], resource: str, container: str):
    """Per-pod samples of ``resource``, with upstream's error wording when they are missing."""
    try:
        return resource_samples(items, resource, container)
    except MetricError as exc:
        raise MetricError(f"unable to get metrics for resource {resource}: {exc}") from None


def get_resource_replicas(current_replicas: int, target_utilization: int, resource: str, pods: Sequence[PodInfo],
                          items: Sequence[PodMetricsItem], now: float, settings: CalculatorSettings,
                          container: str = "") -> ReplicaProposal:
    """``GetResourceReplicas``: Resource/ContainerResource with an ``averageUtilization`` target (§4.6)."""
    metrics = _resource_metrics(items, resource, container)
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now, settings.cpu_initialization_period,
                        settings.delay_of_initial_readiness_status)
    metrics = {p: m for p, m in metrics.items() if p not in groups.ignored and p not in groups.unready}
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests = calculate_requests(pods, container, resource, settings.pod_level_resources)
    ratio, utilization, raw = resource_utilization_ratio(metrics, requests, target_utilization)

    def proposal(replicas: int) -> ReplicaProposal:
        return ReplicaProposal(replicas, utilization=utilization, raw_value=raw)

    tol = settings.tolerances
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tol.is_within(ratio):
            return proposal(current_replicas)
        return proposal(ceil_int32(ratio * groups.ready_count))

    # Second pass: assume the worst for pods we could not measure, so that they dampen the change.
    if groups.missing:
        if ratio < 1.0:
            # Scale-down: a missing pod uses its full request, or the target if that is higher.
            fallback = max(100, target_utilization)
            for pod in groups.missing:
                metrics[pod] = PodMetric(go_div(requests[pod] * fallback, 100))
        elif ratio > 1.0:
            for pod in groups.missing:
                metrics[pod] = PodMetric(0)
    if scale_up_with_unready:
        for pod in groups.unready:
            metrics[pod] = PodMetric(0)
    new_ratio, _, _ = resource_utilization_ratio(metrics, requests, target_utilization)
    return proposal(_second_pass(current_replicas, ratio, new_ratio, len(metrics), tol))


def get_raw_resource_replicas(current_replicas: int, target_milli: int, resource: str, pods: Sequence[PodInfo],
                              items: Sequence[PodMetricsItem], now: float, settings: CalculatorSettings,
                              container: str = "") -> ReplicaProposal:
    """``GetRawResourceReplicas``: Resource/ContainerResource with an ``averageValue`` target (§4.7)."""
    metrics = _resource_metrics(items, resource, container)
    return _plain_metric_replicas(metrics, current_replicas, target_milli, pods, resource, now, settings)


# --------------------------------------------------------------------------- pods metrics


def get_metric_replicas(current_replicas: int, target_milli: int, metric_name: str, pods: Sequence[PodInfo],
                        samples: Mapping[str, PodMetric], now: float, settings: CalculatorSettings) -> ReplicaProposal:
    """``GetMetricReplicas``: a Pods metric with an ``averageValue`` target (§4.7, no CPU rules)."""
    if not samples:
        raise MetricError(f"unable to get metric {metric_name}: no metrics returned from custom metrics API")
    return _plain_metric_replicas(dict(samples), current_replicas, target_milli, pods, "", now, settings)


def _plain_metric_replicas(metrics: dict[str, PodMetric], current_replicas: int, target: int,
                           pods: Sequence[PodInfo], resource: str, now: float,
                           settings: CalculatorSettings) -> ReplicaProposal:
    """``calcPlainMetricReplicas``: §4.6 with a plain average instead of utilization."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now, settings.cpu_initialization_period,
                        settings.delay_of_initial_readiness_status)
    metrics = {p: m for p, m in metrics.items() if p not in groups.ignored and p not in groups.unready}
    if not metrics:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = metric_usage_ratio(metrics, target)
    tol = settings.tolerances
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tol.is_within(ratio):
            return ReplicaProposal(current_replicas, usage=usage)
        return ReplicaProposal(ceil_int32(ratio * groups.ready_count), usage=usage)
    if groups.missing:
        if ratio < 1.0:
            for pod in groups.missing:
                metrics[pod] = PodMetric(target)  # scale-down: a missing pod sits exactly at target
        elif ratio > 1.0:
            for pod in groups.missing:
                metrics[pod] = PodMetric(0)
    if scale_up_with_unready:
        for pod in groups.unready:
            metrics[pod] = PodMetric(0)
    new_ratio, _ = metric_usage_ratio(metrics, target)
    return ReplicaProposal(_second_pass(current_replicas, ratio, new_ratio, len(metrics), tol), usage=usage)


def _second_pass(current: int, ratio: float, new_ratio: float, entries: int, tol: Tolerances) -> int:
    """Keep ``current`` when the corrected ratio is within tolerance or reverses direction."""
    if tol.is_within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    replicas = ceil_int32(new_ratio * entries)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


# --------------------------------------------------------------------------- object metrics


def get_object_metric_replicas(current_replicas: int, target_milli: int, usage: int, pods: Sequence[PodInfo],
                               tolerances: Tolerances) -> ReplicaProposal:
    """``GetObjectMetricReplicas``: an Object metric with a ``value`` target (§4.8)."""
    ratio = float(usage) / float(target_milli)
    return ReplicaProposal(usage_ratio_replica_count(current_replicas, ratio, pods, tolerances), usage=usage)


def get_object_per_pod_metric_replicas(status_replicas: int, target_average_milli: int, usage: int,
                                       tolerances: Tolerances) -> ReplicaProposal:
    """``GetObjectPerPodMetricReplicas``: an Object metric with an ``averageValue`` target (§4.8)."""
    replicas = status_replicas
    ratio = _safe_div(float(usage), float(target_average_milli) * float(status_replicas))
    if not tolerances.is_within(ratio):
        replicas = ceil_int32(float(usage) / float(target_average_milli))
    return ReplicaProposal(replicas, usage=_per_pod_usage(usage, status_replicas))


# --------------------------------------------------------------------------- external metrics


def get_external_metric_replicas(current_replicas: int, target_milli: int, values: Sequence[int],
                                 pods: Sequence[PodInfo], tolerances: Tolerances,
                                 metric_name: str = "") -> ReplicaProposal:
    """``GetExternalMetricReplicas``: an External metric with a ``value`` target (§4.9)."""
    if not values:
        raise MetricError(f"unable to get external metric {metric_name}: no metrics returned from external metrics API")
    usage = 0
    for v in values:
        if v > 0 and usage > MAX_INT64 - v:  # saturate instead of wrapping
            usage = MAX_INT64
            break
        usage += v
    ratio = float(usage) / float(target_milli)
    return ReplicaProposal(usage_ratio_replica_count(current_replicas, ratio, pods, tolerances), usage=usage)


def get_external_per_pod_metric_replicas(status_replicas: int, target_average_milli: int, values: Sequence[int],
                                         tolerances: Tolerances, metric_name: str = "") -> ReplicaProposal:
    """``GetExternalPerPodMetricReplicas``: an External metric with an ``averageValue`` target (§4.9)."""
    if not values:
        raise MetricError(f"unable to get external metric {metric_name}: no metrics returned from external metrics API")
    usage = 0
    for v in values:
        usage = wrap_int64(usage + v)
        if usage < 0:  # Go detects the wrap after the fact
            usage = MAX_INT64
            break
    replicas = status_replicas
    ratio = _safe_div(float(usage), float(target_average_milli) * float(status_replicas))
    if not tolerances.is_within(ratio):
        replicas = ceil_int32(float(usage) / float(target_average_milli))
    if float(usage) >= float(MAX_INT64):
        return ReplicaProposal(replicas, usage=MAX_INT64)
    return ReplicaProposal(replicas, usage=_per_pod_usage(usage, status_replicas))


def _safe_div(a: float, b: float) -> float:
    """float64 division as Go does it: x/0 is ±Inf and 0/0 is NaN (Python would raise)."""
    if b == 0.0:
        return math.nan if a == 0.0 else math.copysign(math.inf, a)
    return a / b


def _per_pod_usage(usage: int, status_replicas: int) -> int:
    if status_replicas == 0:
        return usage  # Go divides by zero here; report the total instead
    return math.ceil(float(usage) / float(status_replicas))
