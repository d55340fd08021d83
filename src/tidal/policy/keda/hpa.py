"""The HPA that KEDA generates for a ScaledObject, run by tidal's shared Kubernetes HPA.

KEDA does not size a workload between 1 and N itself. It creates an HPA (KEDA
``controllers/keda/hpa.go``) and serves that HPA's External metrics; the Kubernetes controller
does the rest. This module is the thin adapter between the two:

* :func:`generated_hpa_spec` builds the HPA KEDA would create: one External metric per trigger
  (``s<index>-<name>``, AverageValue or Value target) or the one ``composite-metric`` of the
  scaling modifiers, a Resource metric per cpu/memory trigger, ``minReplicas =
  max(1, minReplicaCount)``, ``maxReplicas = maxReplicaCount`` and the ScaledObject's
  ``behavior``, with the paused-scale-in/out annotations as ``selectPolicy: Disabled``;
* :class:`KedaMetricsSource` answers the controller's metric requests: pods and resource usage
  come from the observation (:mod:`tidal.policy.hpa.adapter`), External metric values from
  KEDA's metrics server (the policy's scaler query, fallback included);
* :class:`GeneratedHPA` holds the shared :class:`~tidal.policy.hpa.controller.HPAController`
  and its memory, so the maths (replica calculator, tolerances, stabilization, rate limits) is
  exactly the ``hpa`` policy's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tidal.core.types import Observation
from tidal.policy.hpa.adapter import ObservationSource, to_milli
from tidal.policy.hpa.behavior import DISABLED, Behavior, ScalingPolicy, ScalingRules
from tidal.policy.hpa.controller import HPAController, ReconcileResult
from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.history import HPAState
from tidal.policy.hpa.spec import EXTERNAL, RESOURCE, ControllerSettings, HPASpec, MetricSpec, MetricTarget
from tidal.policy.keda.config import HPABehavior, HPAScalingRules, KedaConfig
from tidal.policy.keda.scalers import ScalerSpec


@dataclass(frozen=True, slots=True)
class ExternalMetric:
    """One External metric of the generated HPA: its name, target type and target value."""

    name: str
    metric_type: str  # "AverageValue" or "Value"
    target: float

    @property
    def target_milli(self) -> int:
        # KEDA hands the HPA resource.NewMilliQuantity(int64(target * 1000)): truncated.
        return int(self.target * 1000)


@dataclass(frozen=True, slots=True)
class ExternalValue:
    """KEDA's answer for one External metric: a value, or the error that fails the request."""

    value: float | None
    error: str | None = None


# --------------------------------------------------------------------------- the generated spec


def generated_behavior(behavior: HPABehavior | None, pause_scale_in: bool, pause_scale_out: bool) -> Behavior | None:
    """``spec.behavior`` as KEDA writes it; the controller defaults the unset fields.

    ``autoscaling.keda.sh/paused-scale-in`` sets ``scaleDown.selectPolicy: Disabled`` and
    ``paused-scale-out`` ``scaleUp.selectPolicy: Disabled``, creating the behavior if needed.
    """
    if behavior is None and not pause_scale_in and not pause_scale_out:
        return None
    up = _rules(behavior.scaleUp if behavior else None, pause_scale_out)
    down = _rules(behavior.scaleDown if behavior else None, pause_scale_in)
    return Behavior(up, down)


def _rules(rules: HPAScalingRules | None, paused: bool) -> ScalingRules | None:
    if rules is None and not paused:
        return None
    rules = rules or HPAScalingRules()
    policies = None if rules.policies is None else tuple(
        ScalingPolicy(p.type, p.value, p.periodSeconds) for p in rules.policies)
    return ScalingRules(
        stabilization_window_seconds=rules.stabilizationWindowSeconds,
        select_policy=DISABLED if paused else rules.selectPolicy,
        policies=policies,
        tolerance=rules.tolerance,
    )


def resource_metric_spec(scaler: ScalerSpec) -> MetricSpec:
    """A cpu/memory trigger as a Resource metric (Utilization in percent, or AverageValue)."""
    if scaler.metric_type == "Utilization":
        # The HPA's averageUtilization is an int32 percentage.
        target = MetricTarget("Utilization", average_utilization=int(scaler.target))
    else:
        # tidal units (cores, MiB) -> Kubernetes milli-units of the base unit (cores, bytes).
        target = MetricTarget("AverageValue", average_value_milli=to_milli(scaler.source, scaler.target))
    return MetricSpec(RESOURCE, scaler.source, target)


def external_metric_spec(metric: ExternalMetric) -> MetricSpec:
    if metric.metric_type == "Value":
        return MetricSpec(EXTERNAL, metric.name, MetricTarget("Value", value_milli=metric.target_milli))
    return MetricSpec(EXTERNAL, metric.name, MetricTarget("AverageValue", average_value_milli=metric.target_milli))


def generated_hpa_spec(config: KedaConfig, resource: Sequence[ScalerSpec], external: Sequence[ExternalMetric],
                       behavior: Behavior | None) -> HPASpec:
    """The HPA KEDA creates; its metric specs are sorted by type (External before Resource)."""
    metrics = [external_metric_spec(m) for m in external] + [resource_metric_spec(s) for s in resource]
    return HPASpec(max_replicas=config.hpa_max, min_replicas=config.hpa_min, metrics=tuple(metrics),
                   behavior=behavior)


# --------------------------------------------------------------------------- metrics source


class KedaMetricsSource(ObservationSource):
    """The APIs the generated HPA reads: the observation's pods and usage, and KEDA's metrics.

    ``external`` queries KEDA's metrics server for every External metric at once; it runs at
    the controller's first External request of the sync and never when the HPA reads no
    metric (at zero replicas or out of bounds), because each query counts towards fallback.
    """

    def __init__(self, obs: Observation, external: Callable[[], Mapping[str, ExternalValue]]) -> None:
        super().__init__(obs)
        self._query = external
        self._values: Mapping[str, ExternalValue] | None = None

    @property
    def external_values(self) -> Mapping[str, ExternalValue]:
        """The values served this sync (empty if the HPA asked for none)."""
        return self._values or {}

    def external_metric(self, name: str, selector: Mapping[str, object] | None) -> Sequence[int]:
        if self._values is None:
            self._values = self._query()
        answer = self._values.get(name)
        if answer is None or answer.error is not None or answer.value is None:
            raise MetricError(answer.error if answer is not None and answer.error else f"no value for {name}")
        # KEDA serves milli-quantities; the value is already milli-truncated by the scaler.
        return [round(answer.value * 1000)]


# --------------------------------------------------------------------------- the HPA


class GeneratedHPA:
    """The generated HPA and the controller's memory of it, on the shared HPA implementation."""

    def __init__(self, config: KedaConfig, resource: Sequence[ScalerSpec], external: Sequence[ExternalMetric],
                 behavior: Behavior | None) -> None:
        self.spec = generated_hpa_spec(config, resource, external, behavior)
        self.external = {m.name: m for m in external}
        # kube-controller-manager defaults: tolerance 0.1, 5 min downscale stabilization, ...
        self.controller = HPAController(self.spec, ControllerSettings())

    @property
    def behavior(self) -> Behavior | None:
        """The defaulted behavior the controller runs with (``None``: the legacy rules)."""
        return self.controller.spec.behavior

    def sync(self, obs: Observation,
             external: Callable[[], Mapping[str, ExternalValue]]) -> tuple[ReconcileResult, KedaMetricsSource]:
        """One HPA sync at ``obs.time``; returns the result and the source it read."""
        source = KedaMetricsSource(obs, external)
        result = self.controller.reconcile(obs.time, obs.replicas, source.status_replicas, source)
        return result, source

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state.to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.state = HPAState.from_dict(state) if state else HPAState()
