"""Behaviours that wrap any policy and make its raw recommendation safe to actuate."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy, PolicyWrapper


class Bounded(PolicyWrapper):
    """Clamp the inner policy's recommendation to ``[min_replicas, max_replicas]``."""

    def __init__(self, inner: Policy, min_replicas: int, max_replicas: int) -> None:
        if min_replicas < 0 or max_replicas < min_replicas:
            raise ValueError(
                f"replica bounds must satisfy 0 <= min <= max, got min={min_replicas}, max={max_replicas}"
            )
        super().__init__(inner)
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas

    def decide(self, obs: Observation) -> Decision:
        raw = self.inner.decide(obs)
        clamped = min(max(raw.replicas, self.min_replicas), self.max_replicas)
        if clamped == raw.replicas:
            return raw
        return replace(raw, replicas=clamped, reason=f"{raw.reason} (clamped to {clamped})".strip())


class Stabilized(PolicyWrapper):
    """HPA-style stabilisation windows over the recommendation history.

    Scaling up uses the *minimum* recommendation of the last ``up_window_s`` seconds and scaling
    down the *maximum* of the last ``down_window_s``, so a brief dip or spike does not flap the
    replica count (Kubernetes ``behavior.scale{Up,Down}.stabilizationWindowSeconds``).
    """

    def __init__(self, inner: Policy, up_window_s: float = 0.0, down_window_s: float = 300.0) -> None:
        if up_window_s < 0 or down_window_s < 0:
            raise ValueError("stabilization windows must be >= 0 seconds")
        super().__init__(inner)
        self.up_window_s = up_window_s
        self.down_window_s = down_window_s
        self._history: deque[tuple[float, int]] = deque()

    def decide(self, obs: Observation) -> Decision:
        raw = self.inner.decide(obs)
        self._history.append((obs.time, raw.replicas))
        horizon = obs.time - max(self.up_window_s, self.down_window_s)
        while self._history and self._history[0][0] < horizon:
            self._history.popleft()
        up_floor = min(r for t, r in self._history if t >= obs.time - self.up_window_s)
        down_ceiling = max(r for t, r in self._history if t >= obs.time - self.down_window_s)
        current = obs.replicas
        if raw.replicas > current:
            stable = min(raw.replicas, max(up_floor, current))
        elif raw.replicas < current:
            stable = max(raw.replicas, min(down_ceiling, current))
        else:
            stable = current
        if stable == raw.replicas:
            return raw
        return replace(raw, replicas=stable, reason=f"{raw.reason} (stabilized at {stable})".strip())

    def _own_state(self) -> dict[str, Any]:
        return {"history": [[t, r] for t, r in self._history]}

    def _load_own_state(self, state: dict[str, Any]) -> None:
        self._history = deque((float(t), int(r)) for t, r in state.get("history", []))
