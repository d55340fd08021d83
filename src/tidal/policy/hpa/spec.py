"""The HPA object as plain values: metric specs, bounds, behavior, and the controller's flags.

These are what the controller consumes; :mod:`tidal.policy.hpa.config` builds them from a
validated manifest-style config block, and tests build them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tidal.policy.hpa.behavior import Behavior

RESOURCE = "Resource"
CONTAINER_RESOURCE = "ContainerResource"
PODS_METRIC = "Pods"
OBJECT = "Object"
EXTERNAL = "External"


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """``MetricTarget`` with quantities already in milli-units (``MilliValue()``)."""

    type: str
    value_milli: int | None = None
    average_value_milli: int | None = None
    average_utilization: int | None = None


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One entry of ``spec.metrics``.

    ``name`` is the resource name (Resource, ContainerResource) or the metric name (Pods, Object,
    External); ``container`` is set for ContainerResource; ``described_object`` for Object;
    ``selector`` is the metric's label selector. Unknown ``type`` values are kept: the controller
    reports them as invalid metrics, as Kubernetes does.
    """

    type: str
    name: str = ""
    target: MetricTarget | None = None
    container: str = ""
    described_object: Mapping[str, str] | None = None
    selector: Mapping[str, object] | None = None

    def describe(self) -> str:
        if self.type in (RESOURCE, CONTAINER_RESOURCE):
            return f"{self.name}" + (f"[{self.container}]" if self.container else "")
        return self.name or self.type


@dataclass(frozen=True, slots=True)
class HPASpec:
    """``spec`` of a HorizontalPodAutoscaler. ``min_replicas=None`` means the API default, 1."""

    max_replicas: int
    min_replicas: int | None = None
    metrics: tuple[MetricSpec, ...] = field(default_factory=tuple)
    behavior: Behavior | None = None


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """kube-controller-manager flags (spec §2) plus the two package constants of §5.2."""

    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    delay_of_initial_readiness_status: float = 30.0
    downscale_stabilization_window: float = 300.0
    scale_up_limit_factor: float = 2.0
    scale_up_limit_minimum: float = 4.0
    #: Feature gates: per-HPA tolerances (beta, on) and pod-level resources (on).
    configurable_tolerance: bool = True
    pod_level_resources: bool = True
