"""One reconcile of one HPA (``reconcileAutoscaler``, spec §3), on any source of pods and metrics.

The controller asks a :class:`MetricsSource` for what the Kubernetes APIs would return, runs the
calculator per metric, takes the maximum proposal, and normalizes it with or without
``behavior``. Its memory (recommendations, scale events) lives in :class:`HPAState`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidal.policy.hpa import calculator as calc
from tidal.policy.hpa.behavior import default_behavior
from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.history import HPAState, record_initial_recommendation, store_scale_event
from tidal.policy.hpa.metrics import PodMetric, PodMetricsItem
from tidal.policy.hpa.normalize import Normalized, normalize_desired_replicas, normalize_desired_replicas_with_behaviors
from tidal.policy.hpa.numeric import Tolerances
from tidal.policy.hpa.pods import PodInfo
from tidal.policy.hpa.spec import (
    CONTAINER_RESOURCE,
    EXTERNAL,
    OBJECT,
    PODS_METRIC,
    RESOURCE,
    ControllerSettings,
    HPASpec,
    MetricSpec,
)


class MetricsSource(Protocol):
    """What the Kubernetes APIs return for one sync. Fetch methods raise :class:`MetricError`."""

    def pods(self) -> Sequence[PodInfo]:
        """Pods matched by the scale target's selector."""

    def resource_metrics(self, resource: str) -> Sequence[PodMetricsItem]:
        """``metrics.k8s.io`` PodMetrics items of the selected pods."""

    def pods_metric(self, name: str, selector: Mapping[str, object] | None) -> Mapping[str, PodMetric]:
        """``custom.metrics.k8s.io`` per-pod values of ``name``."""

    def object_metric(self, name: str, described_object: Mapping[str, str] | None,
                      selector: Mapping[str, object] | None) -> int:
        """``custom.metrics.k8s.io`` value of ``name`` on one object, milli-units."""

    def external_metric(self, name: str, selector: Mapping[str, object] | None) -> Sequence[int]:
        """``external.metrics.k8s.io`` values of ``name``, milli-units."""


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's outcome this sync: a proposal, or the error that made it invalid."""

    spec: MetricSpec
    proposal: calc.ReplicaProposal | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """What one sync decided.

    ``desired_replicas`` equals the current count unless ``rescale``; ``reason`` says why in the
    words of the Kubernetes conditions; ``error`` carries the (first) metric error, if any.
    """

    desired_replicas: int
    rescale: bool
    reason: str
    metrics: tuple[MetricResult, ...] = ()
    prenormalized: int | None = None
    normalized: Normalized | None = None
    error: str | None = None


class HPAController:
    """The HPA reconcile loop body for one HPA, with its own memory.

    ``spec.behavior`` is defaulted here exactly as the API server would (only when present).
    """

    def __init__(self, spec: HPASpec, settings: ControllerSettings | None = None,
                 state: HPAState | None = None) -> None:
        self.spec = HPASpec(spec.max_replicas, spec.min_replicas, tuple(spec.metrics), default_behavior(spec.behavior))
        self.settings = settings or ControllerSettings()
        self.state = state or HPAState()

    # ------------------------------------------------------------------ configuration
    def tolerances(self) -> Tolerances:
        """``tolerancesForHpa``: the flag for both directions, overridden per direction by behavior."""
        flag = self.settings.tolerance
        behavior = self.spec.behavior
        if behavior is None or not self.settings.configurable_tolerance:
            return Tolerances(flag, flag)
        down = behavior.scale_down.tolerance if behavior.scale_down is not None else None
        up = behavior.scale_up.tolerance if behavior.scale_up is not None else None
        return Tolerances(flag if down is None else down, flag if up is None else up)

    def calculator_settings(self) -> calc.CalculatorSettings:
        s = self.settings
        return calc.CalculatorSettings(self.tolerances(), s.cpu_initialization_period,
                                       s.delay_of_initial_readiness_status, s.pod_level_resources)

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, now: float, spec_replicas: int, status_replicas: int, source: MetricsSource) -> ReconcileResult:
        """Run one sync at ``now`` for a target with ``spec_replicas`` (and ``status_replicas``)."""
        spec, state = self.spec, self.state
        current = spec_replicas
        record_initial_recommendation(state, current, now)
        min_replicas = 1 if spec.min_replicas is None else spec.min_replicas

        if current == 0 and min_replicas != 0:
            return ReconcileResult(0, False, "ScalingDisabled: the target has zero replicas")
        if current > spec.max_replicas:
            return self._rescale(current, spec.max_replicas, now, "current replicas above maxReplicas")
        if current < min_replicas:
            return self._rescale(current, min_replicas, now, "current replicas below minReplicas")

        proposal, results, error = self.compute_replicas_for_metrics(now, spec_replicas, status_replicas, source)
        if proposal is None:
            # No safe proposal: keep the count and record nothing (the sync "failed").
            return ReconcileResult(current, False, "FailedComputeMetricsReplicas", results, error=error)
        prenormalized = max(0, proposal)
        if spec.behavior is None:
            s = self.settings
            normalized = normalize_desired_replicas(state, current, prenormalized, min_replicas, spec.max_replicas, now,
                                                    s.downscale_stabilization_window, s.scale_up_limit_factor,
                                                    s.scale_up_limit_minimum)
        else:
            normalized = normalize_desired_replicas_with_behaviors(state, spec.behavior, current, prenormalized,
                                                                   min_replicas, spec.max_replicas, now,
                                                                   self.settings.downscale_stabilization_window)
        desired = normalized.replicas
        reason = f"{normalized.stabilization_reason}, {normalized.limit_reason}"
        if desired != current:
            store_scale_event(state, spec.behavior, current, desired, now)
        return ReconcileResult(desired, desired != current, reason, results, prenormalized, normalized, error)

    def _rescale(self, current: int, desired: int, now: float, reason: str) -> ReconcileResult:
        store_scale_event(self.state, self.spec.behavior, current, desired, now)
        return ReconcileResult(desired, True, reason)

    def compute_replicas_for_metrics(self, now: float, spec_replicas: int, status_replicas: int,
                                     source: MetricsSource) -> tuple[int | None, tuple[MetricResult, ...], str | None]:
        """``computeReplicasForMetrics``: the largest valid proposal, or ``None`` when unsafe.

        With every metric invalid, or some invalid while the valid ones would scale down, there is
        no proposal (never scale down on partial information); the first error is returned too.
        """
        settings = self.calculator_settings()
        pods: list[Sequence[PodInfo]] = []

        def selected_pods() -> Sequence[PodInfo]:
            if not pods:
                pods.append(source.pods())
            return pods[0]

        results: list[MetricResult] = []
        replicas: int | None = None
        first_error: str | None = None
        invalid = 0
        for metric in self.spec.metrics:
            try:
                proposal = compute_replicas_for_metric(metric, spec_replicas, status_replicas, selected_pods, source,
                                                       now, settings)
            except MetricError as exc:
                invalid += 1
                first_error = first_error or f"{metric.describe()}: {exc}"
                results.append(MetricResult(metric, error=str(exc)))
                continue
            results.append(MetricResult(metric, proposal))
            if replicas is None or proposal.replicas > replicas:
                replicas = proposal.replicas
        if first_error is not None:
            first_error = (f"invalid metrics ({invalid} invalid out of {len(self.spec.metrics)}), "
                           f"first error is: {first_error}")
        if replicas is None or invalid >= len(self.spec.metrics) or (invalid > 0 and replicas < spec_replicas):
            return None, tuple(results), first_error or "no metrics"
        return replicas, tuple(results), first_error


def compute_replicas_for_metric(metric: MetricSpec, spec_replicas: int, status_replicas: int,
                                pods: Callable[[], Sequence[PodInfo]], source: MetricsSource, now: float,
                                settings: calc.CalculatorSettings) -> calc.ReplicaProposal:
    """``computeReplicasForMetric``: dispatch one metric spec to its calculator (spec §3 table).

    ``pods`` is a callable returning the selected pods (listed once per sync, on first use).
    """
    target = metric.target
    tol = settings.tolerances
    if metric.type in (RESOURCE, CONTAINER_RESOURCE):
        if target is None:
            raise MetricError("invalid resource metric source: no target was set")
        if target.average_value_milli is not None:
            return calc.get_raw_resource_replicas(spec_replicas, target.average_value_milli, metric.name, pods(),
                                                  _resource_items(source, metric.name), now, settings, metric.container)
        if target.average_utilization is None:
            raise MetricError("invalid resource metric source: neither an average utilization target nor an "
                              "average value (usage) target was set")
        return calc.get_resource_replicas(spec_replicas, target.average_utilization, metric.name, pods(),
                                          _resource_items(source, metric.name), now, settings, metric.container)
    if metric.type == PODS_METRIC:
        if target is None or target.average_value_milli is None:
            raise MetricError("invalid pods metric source: no averageValue target was set")
        samples = source.pods_metric(metric.name, metric.selector)
        return calc.get_metric_replicas(spec_replicas, target.average_value_milli, metric.name, pods(), samples, now,
                                        settings)
    if metric.type == OBJECT:
        if target is not None and target.type == "Value" and target.value_milli is not None:
            usage = source.object_metric(metric.name, metric.described_object, metric.selector)
            return calc.get_object_metric_replicas(spec_replicas, target.value_milli, usage, pods(), tol)
        if target is not None and target.type == "AverageValue" and target.average_value_milli is not None:
            usage = source.object_metric(metric.name, metric.described_object, metric.selector)
            return calc.get_object_per_pod_metric_replicas(status_replicas, target.average_value_milli, usage, tol)
        raise MetricError("invalid object metric source: neither a value target nor an average value target was set")
    if metric.type == EXTERNAL:
        if target is not None and target.average_value_milli is not None:
            values = source.external_metric(metric.name, metric.selector)
            return calc.get_external_per_pod_metric_replicas(status_replicas, target.average_value_milli, values, tol,
                                                             metric.name)
        if target is not None and target.value_milli is not None:
            values = source.external_metric(metric.name, metric.selector)
            return calc.get_external_metric_replicas(spec_replicas, target.value_milli, values, pods(), tol,
                                                     metric.name)
        raise MetricError("invalid external metric source: neither a value target nor an average value target was set")
    raise MetricError(f"unknown metric source type {metric.type!r}")


def _resource_items(source: MetricsSource, resource: str) -> Sequence[PodMetricsItem]:
    try:
        return source.resource_metrics(resource)
    except MetricError as exc:
        raise MetricError(f"unable to get metrics for resource {resource}: {exc}") from None
