"""The KPA decider: one ``Scale(now)`` tick of Knative's autoscaler (``scaling/autoscaler.go``).

From the revision-wide stable and panic averages of the scaling metric it computes the desired
pod count, with the max scale-up/down rates relative to ``max(1, ready)``, panic mode (entered when
the unclamped panic count is at least ``panic_threshold`` times the ready pods, held for a stable
window after the last such tick, and never scaling down meanwhile), activation scale, the
scale-down delay window, and the excess burst capacity. It is pure: the caller passes ``now``,
the ready pod count and the metric averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tidal.policy.kpa.maxwindow import MaxTimeWindow

#: Upstream ``tickInterval``: the decider runs every 2 s; also the delay window's slot size.
TICK_INTERVAL = 2.0


@dataclass(frozen=True, slots=True)
class DeciderSpec:
    """Upstream ``DeciderSpec``: everything one decider tick reads.

    ``target_value`` is the per-pod target (total x utilization), ``total_value`` the per-pod
    capacity used for burst capacity and activator counts, ``panic_threshold`` a fraction
    (2.0 = 200 %), windows and delays in seconds. ``reachable`` is False for a revision no
    route sends traffic to (then the scale-down rate and delay are not applied).
    """

    target_value: float
    total_value: float
    target_burst_capacity: float
    panic_threshold: float
    max_scale_up_rate: float
    max_scale_down_rate: float
    activator_capacity: float
    stable_window: float
    scaling_metric: str = "concurrency"
    scale_down_delay: float = 0.0
    reachable: bool = True
    activation_scale: int = 0
    initial_scale: int = 1

    def with_changes(self, **changes: Any) -> DeciderSpec:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """One tick's answer. ``valid`` is False when the pods could not be counted or no metric
    data exists; then upstream leaves the previous recommendation in place."""

    desired: int
    excess_burst_capacity: int
    valid: bool
    panicking: bool = False
    stable_pods: int = 0
    panic_pods: int = 0

    @classmethod
    def invalid(cls) -> ScaleResult:
        return cls(0, 0, False)


def excess_burst_capacity(ready: int, total_value: float, target_burst_capacity: float, panic_value: float) -> int:
    """``floor(ready x total - TBC - panic)``; 0 when TBC is 0 and -1 when unlimited (TBC < 0)."""
    if target_burst_capacity == 0:
        return 0
    if target_burst_capacity < 0:
        return -1
    return int(math.floor(ready * total_value - target_burst_capacity - panic_value))


class Autoscaler:
    """Knative's per-revision decider, with its panic state and optional scale-down delay window.

    ``ready_at_construction`` is the ready pod count when the decider is created (``None`` if it
    could not be read): with more than one ready pod it starts in panic mode at ``now``, so a
    restarted autoscaler does not scale down before it has data.
    """

    def __init__(self, spec: DeciderSpec, ready_at_construction: int | None = 0, now: float = 0.0) -> None:
        self.spec = spec
        ready = ready_at_construction or 0
        #: Time of the last over-threshold tick while panicking; ``None`` when not panicking.
        self.panic_time: float | None = now if ready > 1 else None
        #: Never-decreasing pod count while panicking.
        self.max_panic_pods: int = ready
        # Built once from the initial spec; a later update() does not resize it (as upstream).
        self.delay_window: MaxTimeWindow | None = (
            MaxTimeWindow(spec.scale_down_delay, TICK_INTERVAL) if spec.scale_down_delay > 0 else None
        )

    @property
    def panicking(self) -> bool:
        return self.panic_time is not None

    def update(self, spec: DeciderSpec) -> None:
        """Replace the spec (upstream ``Update``); the delay window is kept as built."""
        self.spec = spec

    def scale(self, now: float, ready: int | None, stable: float | None, panic: float | None) -> ScaleResult:
        """One decider tick.

        ``ready`` is the ready pod count (``None``: the count failed, so the tick is invalid; a
        missing endpoints object counts as 0). ``stable``/``panic`` are the revision-wide window
        averages of the scaling metric (``None``: no data, so the tick is invalid).
        """
        spec = self.spec
        if ready is None or stable is None or panic is None:
            return ScaleResult.invalid()
        ready_f = float(max(1, ready))
        max_up = math.ceil(spec.max_scale_up_rate * ready_f)
        # An unreachable revision may fall straight to its stable count.
        max_down = math.floor(ready_f / spec.max_scale_down_rate) if spec.reachable else 0
        dspc = math.ceil(stable / spec.target_value)
        dppc = math.ceil(panic / spec.target_value)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        if spec.activation_scale > 1:
            # Applied after the rate clamp, so it may exceed max_up.
            if dspc > 0 and stable_pods < spec.activation_scale:
                stable_pods = spec.activation_scale
            if dppc > 0 and panic_pods < spec.activation_scale:
                panic_pods = spec.activation_scale

        # Panic is judged on the raw panic count, before any clamp.
        over = dppc / ready_f >= spec.panic_threshold
        if over:
            self.panic_time = now  # enter, or extend
        elif self.panic_time is not None and self.panic_time + spec.stable_window < now:
            self.panic_time = None
            self.max_panic_pods = 0

        desired = stable_pods
        if self.panic_time is not None:
            desired = max(stable_pods, panic_pods)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            desired = self.max_panic_pods

        if spec.reachable and self.delay_window is not None:
            self.delay_window.record(now, desired)
            desired = int(self.delay_window.current())

        ebc = excess_burst_capacity(ready, spec.total_value, spec.target_burst_capacity, panic)
        return ScaleResult(desired, ebc, True, self.panic_time is not None, stable_pods, panic_pods)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "panic_time": self.panic_time,
            "max_panic_pods": self.max_panic_pods,
            "delay_window": None if self.delay_window is None else self.delay_window.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.panic_time = None if state.get("panic_time") is None else float(state["panic_time"])
        self.max_panic_pods = int(state.get("max_panic_pods", 0))
        saved = state.get("delay_window")
        if saved is None:
            self.delay_window = None
        else:
            self.delay_window = MaxTimeWindow(float(saved["duration"]), float(saved["granularity"]))
            self.delay_window.load_state_dict(saved)
