"""The ``hpa`` policy: the Kubernetes HorizontalPodAutoscaler on tidal's policy contract."""

from __future__ import annotations

from typing import Any

from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.hpa.adapter import ObservationSource
from tidal.policy.hpa.config import HPAConfig
from tidal.policy.hpa.controller import HPAController, ReconcileResult
from tidal.policy.hpa.history import HPAState
from tidal.policy.registry import Cadence, register


class HPAPolicy(Policy):
    """Kubernetes HPA (autoscaling/v2): proportional metrics, stabilization, behavior policies.

    Each ``decide`` is one controller sync at ``obs.time``: the observation is translated into
    pods and metric samples (:mod:`~tidal.policy.hpa.adapter`) and reconciled exactly as
    ``kube-controller-manager`` would. The recommendation history and scale events are the
    policy's state.
    """

    def __init__(self, config: HPAConfig) -> None:
        self.config = config
        self.controller = HPAController(config.to_spec(), config.to_settings())

    def decide(self, obs: Observation) -> Decision:
        source = ObservationSource(obs)
        result = self.controller.reconcile(obs.time, obs.replicas, source.status_replicas, source)
        return Decision(result.desired_replicas, reason=describe_result(result))

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state.to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.state = HPAState.from_dict(state)

    def describe(self) -> str:
        targets = ", ".join(_describe_target(m) for m in self.controller.spec.metrics)
        return f"hpa({targets})"


def describe_result(result: ReconcileResult) -> str:
    """A one-line log reason: each metric's observation and proposal, then the conditions."""
    parts = []
    for m in result.metrics:
        if m.proposal is None:
            parts.append(f"{m.spec.describe()}: {m.error}")
        elif m.proposal.utilization is not None:
            parts.append(f"{m.spec.describe()}={m.proposal.utilization}% -> {m.proposal.replicas}")
        else:
            parts.append(f"{m.spec.describe()}={m.proposal.usage}m -> {m.proposal.replicas}")
    parts.append(result.reason)
    return "; ".join(parts)


def _describe_target(metric) -> str:
    t = metric.target
    if t is None:
        return metric.describe()
    if t.average_utilization is not None:
        return f"{metric.describe()} {t.average_utilization}%"
    value = t.average_value_milli if t.average_value_milli is not None else t.value_milli
    return f"{metric.describe()} {value}m"


register("hpa", HPAConfig, summary="Kubernetes HorizontalPodAutoscaler (autoscaling/v2)",
         cadence=Cadence(15.0, 15.0, "--horizontal-pod-autoscaler-sync-period 15 s; metrics-server resolution 15 s"))(
    HPAPolicy)
