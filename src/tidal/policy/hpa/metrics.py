"""Metric samples as the Kubernetes metrics client delivers them (``metrics/client.go``).

Resource metrics arrive as one :class:`PodMetricsItem` per pod (per-container usage, a timestamp
and a window, as ``metrics.k8s.io`` returns them); :func:`resource_samples` reduces them to one
:class:`PodMetric` per pod for a resource, whole-pod or one container (spec §4.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tidal.policy.hpa.errors import MetricError


@dataclass(frozen=True, slots=True)
class PodMetric:
    """One pod's sample: ``value`` in milli-units, collected over ``[timestamp - window, timestamp]``."""

    value: int
    timestamp: float = 0.0
    window: float = 60.0


@dataclass(frozen=True, slots=True)
class PodMetricsItem:
    """One ``PodMetrics`` item: usage per container (container -> resource -> milli-units)."""

    pod: str
    timestamp: float
    window: float
    containers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


def resource_samples(items: Sequence[PodMetricsItem], resource: str, container: str = "") -> dict[str, PodMetric]:
    """Per-pod samples of ``resource`` (``GetResourceMetric``).

    Whole pod (no ``container``): the sum over containers, and no sample if any container lacks
    the resource or the pod lists no container. Named container: that container's usage; a pod
    without it has no sample (newer clients only log this; spec §8.2). An empty list is an error.
    """
    if not items:
        raise MetricError("no metrics returned from resource metrics API")
    samples: dict[str, PodMetric] = {}
    for item in items:
        if container:
            usage = item.containers.get(container, {}).get(resource)
            if usage is not None:
                samples[item.pod] = PodMetric(usage, item.timestamp, item.window)
            continue
        values = [usage.get(resource) for usage in item.containers.values()]
        if values and all(v is not None for v in values):
            samples[item.pod] = PodMetric(sum(values), item.timestamp, item.window)
    return samples
