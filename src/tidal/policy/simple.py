"""Two simple built-in policies that exercise the contract: static and target utilisation."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from tidal.config.fields import Duration
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.registry import PolicyConfig, register


class StaticConfig(PolicyConfig):
    replicas: int = Field(ge=0, description="fixed replica count")


class StaticPolicy(Policy):
    """Always ask for the same number of replicas (the baseline of every comparison)."""

    def __init__(self, config: StaticConfig) -> None:
        self.config = config

    def decide(self, obs: Observation) -> Decision:
        return Decision(self.config.replicas, reason="static")

    def describe(self) -> str:
        return f"static({self.config.replicas})"


class TargetUtilizationConfig(PolicyConfig):
    target: float = Field(0.6, gt=0, description="desired mean value of the metric per replica")
    metric: Literal["utilization", "cpu_utilization", "gpu_utilization", "concurrency"] = "utilization"
    window: Duration = Field(60.0, ge=0, description="averaging window of the metric (0: latest sample)")
    tolerance: float = Field(0.0, ge=0, lt=1, description="no change while |ratio - 1| <= tolerance")


class TargetUtilizationPolicy(Policy):
    """Proportional sizing: ``ceil(ready * observed / target)``, the rule HPA is built on.

    ``utilization`` is the busy fraction of replica slots (0..1); ``cpu_utilization`` and
    ``gpu_utilization`` are percent of the pod's request averaged over pods, as metrics-server
    reports them; ``concurrency`` is in-flight requests per ready replica. With no ready replica
    and traffic waiting, it asks for one replica (scale from zero).
    """

    def __init__(self, config: TargetUtilizationConfig) -> None:
        self.config = config

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        if cfg.metric == "concurrency":
            total = self._recent(obs, "concurrency")
            ready = self._recent(obs, "ready_replicas") or obs.ready
            value = None if total is None else total / max(ready, 1.0)
        else:
            value = self._recent(obs, cfg.metric)
        if value is None:
            return Decision(obs.replicas, reason="no metrics yet: hold")
        if obs.ready == 0:
            waiting = (obs.metrics.last("rps") or 0.0) + (obs.metrics.last("concurrency") or 0.0)
            desired = max(obs.replicas, 1) if waiting > 0 else obs.replicas
            return Decision(desired, reason="no ready replica: scale from zero" if waiting > 0 else "idle")
        ratio = value / cfg.target
        if abs(ratio - 1.0) <= cfg.tolerance:
            return Decision(obs.replicas, reason=f"{cfg.metric}={value:.3g} within tolerance")
        desired = math.ceil(obs.ready * ratio - 1e-9)
        return Decision(desired, reason=f"{cfg.metric}={value:.3g} target={cfg.target:g}")

    def _recent(self, obs: Observation, name: str) -> float | None:
        """Mean over the window, or the latest sample with ``window: 0``."""
        if self.config.window > 0:
            return obs.metrics.mean(name, self.config.window)
        return obs.metrics.last(name)

    def describe(self) -> str:
        return f"target_utilization({self.config.metric}={self.config.target:g})"


register("static", StaticConfig)(StaticPolicy)
register("target_utilization", TargetUtilizationConfig)(TargetUtilizationPolicy)
