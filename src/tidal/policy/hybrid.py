"""The ``hybrid`` policy: a predictive floor, a reactive correction, fast up and slow down.

- **floor** — the ``predictive`` policy's count (forecast one start-up ahead, plus margin);
- **correction** — ``target_utilization`` on the observed utilisation, which catches what the
  forecast missed (a flash crowd, a wrong capacity estimate);
- **fast up** — whenever ``max(floor, correction)`` exceeds the current count, go there now;
- **slow down** — a lower count must be what every decision of the last ``scale_down_delay``
  asked for (the highest of them is used), and at most ``scale_down_rate`` of the replicas go per
  ``scale_down_period`` (at least one), so a forecast dip or a quiet minute does not shed
  capacity that takes a cold start to get back.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from pydantic import Field

from tidal.config.fields import Duration
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.predictive import PredictiveConfig, PredictivePolicy
from tidal.policy.registry import PolicyConfig, register
from tidal.policy.simple import TargetUtilizationConfig, TargetUtilizationPolicy


class HybridConfig(PolicyConfig):
    """Parameters of the ``hybrid`` policy (see ``docs/policies/predictive.md``)."""

    predictive: PredictiveConfig = Field(default_factory=PredictiveConfig, description="the floor")
    reactive: TargetUtilizationConfig = Field(default_factory=lambda: TargetUtilizationConfig(target=0.8),
                                              description="the correction (a target_utilization block)")
    scale_down_delay: Duration = Field(300.0, ge=0, description="a lower count must persist this long")
    scale_down_rate: float = Field(0.1, gt=0, le=1, description="fraction of replicas removable per period")
    scale_down_period: Duration = Field(60.0, gt=0, description="period of the scale-down rate limit")


class HybridPolicy(Policy):
    """Predictive floor plus reactive correction; scale up at once, down late and gradually."""

    def __init__(self, config: HybridConfig) -> None:
        self.config = config
        self.predictive = PredictivePolicy(config.predictive)
        self.reactive = TargetUtilizationPolicy(config.reactive)
        self._wanted: deque[tuple[float, int]] = deque()  # (time, max(floor, correction))
        self._removed: deque[tuple[float, int]] = deque()  # (time, replicas this policy removed)

    def decide(self, obs: Observation) -> Decision:
        cfg = self.config
        floor = self.predictive.decide(obs)
        correction = self.reactive.decide(obs)
        wanted = max(floor.replicas, correction.replicas)
        source = "predictive" if floor.replicas >= correction.replicas else "reactive"
        self._remember(obs.time, wanted)
        current = obs.replicas
        if wanted >= current:
            return Decision(wanted, reason=f"{source}: {floor.reason if source == 'predictive' else correction.reason}")
        # Slow down: the highest count wanted within the delay, then the rate limit.
        held = max(r for _, r in self._wanted)
        target = min(current, held)
        if target < current:
            target = max(target, current - self._removable(current))
        if target < current:
            self._removed.append((obs.time, current - target))
            return Decision(target, reason=f"scale down towards {wanted} ({source})")
        return Decision(current, reason=f"hold {current}: {wanted} wanted for less than {cfg.scale_down_delay:g}s "
                                         "or rate limit reached")

    def _remember(self, now: float, wanted: int) -> None:
        self._wanted.append((now, wanted))
        while self._wanted and self._wanted[0][0] < now - self.config.scale_down_delay - 1e-9:
            self._wanted.popleft()
        while self._removed and self._removed[0][0] <= now - self.config.scale_down_period + 1e-9:
            self._removed.popleft()

    def _removable(self, current: int) -> int:
        """Replicas that may still go in this period: HPA's Percent rule on the period's start."""
        removed = sum(n for _, n in self._removed)
        allowed = max(1, math.floor(self.config.scale_down_rate * (current + removed) + 1e-9))
        return max(0, allowed - removed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "predictive": self.predictive.state_dict(),
            "wanted": [[t, r] for t, r in self._wanted],
            "removed": [[t, n] for t, n in self._removed],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.predictive.load_state_dict(state["predictive"])
        self._wanted = deque((float(t), int(r)) for t, r in state.get("wanted", []))
        self._removed = deque((float(t), int(n)) for t, n in state.get("removed", []))

    def describe(self) -> str:
        cfg = self.config
        return (f"hybrid({self.predictive.describe()} + {self.reactive.describe()}, "
                f"down after {cfg.scale_down_delay:g}s at {cfg.scale_down_rate:g}/{cfg.scale_down_period:g}s)")


register("hybrid", HybridConfig)(HybridPolicy)
