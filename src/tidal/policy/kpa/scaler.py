"""From the decider's desired count to a replica patch: bounds and the scale-to-zero gate.

Upstream ``pkg/reconciler/autoscaling/kpa/scaler.go`` (``scale``, ``handleScaleToZero``). The
decider may say 0 long before the revision may really go to zero: the PodAutoscaler (PA) must
first have been Active for a stable window (meanwhile it is held at 1), then be marked Inactive
so the activator takes over the traffic (the SKS switches to Proxy), and only once the activator
is confirmed in the path and the grace period (or the last-pod retention period) has passed is
the target patched to 0. Pure: the caller passes ``now`` and the PA/SKS status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

#: Desired scale meaning "no recommendation yet" (upstream ``scaleUnknown``).
SCALE_UNKNOWN = -1
#: Slack added to the progress deadline before giving up activation (upstream 30 s).
ACTIVATION_TIMEOUT_BUFFER = 30.0
#: Requeue delay while waiting for the SKS to switch to Proxy.
PROXY_REQUEUE = 3.0

ActiveStatus = Literal["True", "False", "Unknown"]
Reachability = Literal["Reachable", "Unreachable", "Unknown"]
SKSMode = Literal["Serve", "Proxy"]


@dataclass(frozen=True, slots=True)
class ScaleSettings:
    """The resolved (annotation-or-config) knobs the scaler reads, durations in seconds."""

    enable_scale_to_zero: bool = True
    stable_window: float = 60.0
    scale_to_zero_grace_period: float = 30.0
    scale_to_zero_pod_retention_period: float = 0.0
    initial_scale: int = 1
    min_scale: int = 0
    max_scale: int = 0
    target_burst_capacity: float = 211.0
    progress_deadline: float = 600.0

    @property
    def activation_timeout(self) -> float:
        return self.progress_deadline + ACTIVATION_TIMEOUT_BUFFER


@dataclass(frozen=True, slots=True)
class PAStatus:
    """What the scaler reads of the PodAutoscaler: its Active condition and when it last changed."""

    active: ActiveStatus = "Unknown"
    active_since: float = 0.0
    scale_target_initialized: bool = False
    reachability: Reachability = "Reachable"

    @property
    def reachable(self) -> bool:
        # "Unknown" reachability counts as reachable upstream.
        return self.reachability != "Unreachable"


@dataclass(frozen=True, slots=True)
class SKSStatus:
    """The ServerlessService: ``Proxy`` puts the activator in the path; ``proxy_since`` is when
    its endpoints were populated (``None`` when serving directly)."""

    mode: SKSMode = "Serve"
    proxy_since: float | None = None

    def proxy_for(self, now: float) -> float:
        return 0.0 if self.proxy_since is None else now - self.proxy_since


@dataclass(frozen=True, slots=True)
class ScaleOutcome:
    """``scale``: the returned desired scale; ``patch``: the replica count written to the target
    (``None`` = nothing written); ``requeue_after``: when the reconciler asked to run again;
    ``async_probe``: an activator probe was started; ``note``: why, for logs."""

    scale: int
    patch: int | None = None
    requeue_after: float | None = None
    async_probe: bool = False
    note: str = ""


def scale_bounds(settings: ScaleSettings, pa: PAStatus) -> tuple[int, int]:
    """(min, max) replicas; min is 0 for an unreachable revision, max 0 means unbounded."""
    return (settings.min_scale if pa.reachable else 0), settings.max_scale


def apply_bounds(lo: int, hi: int, x: int) -> int:
    """Clamp to ``[lo, hi]`` where ``hi == 0`` means no upper bound."""
    if x < lo:
        return lo
    if hi != 0 and x > hi:
        return hi
    return x


@dataclass(frozen=True, slots=True)
class _Gate:
    scale: int
    apply: bool
    requeue_after: float | None = None
    async_probe: bool = False
    note: str = ""


def handle_scale_to_zero(
    desired: int,
    *,
    now: float,
    settings: ScaleSettings,
    pa: PAStatus,
    sks: SKSStatus | None,
    activator_in_path: Callable[[], bool],
) -> _Gate:
    """Upstream ``handleScaleToZero``: let a 0 through only when the revision may go idle."""
    if desired != 0:
        return _Gate(desired, True)
    if not settings.enable_scale_to_zero:
        return _Gate(1, True, note="scale-to-zero disabled: hold 1")
    age = now - pa.active_since
    if pa.active == "Unknown":  # activating
        if age > settings.activation_timeout:
            return _Gate(0, True, note="activation timed out")
        return _Gate(SCALE_UNKNOWN, False, requeue_after=settings.activation_timeout, note="activating")
    if pa.active == "True":
        if age >= settings.stable_window:
            # Reported as 0 (not applied) so the reconciler marks the PA Inactive.
            requeue = PROXY_REQUEUE if sks is not None and sks.mode == "Proxy" else None
            return _Gate(0, False, requeue_after=requeue, note="idle: marking inactive")
        return _Gate(1, True, requeue_after=settings.stable_window - age,
                     note=f"idle for less than the stable window: hold 1 ({settings.stable_window - age:.0f}s left)")
    # Inactive: the activator must be in the path before the pods may go.
    in_path = True if settings.target_burst_capacity == -1 else activator_in_path()
    if not in_path:
        return _Gate(0, False, async_probe=True, note="activator not yet in path")
    retention = 0.0 if not pa.reachable else settings.scale_to_zero_pod_retention_period
    if age >= max(settings.scale_to_zero_grace_period, retention):
        return _Gate(0, True, note="grace period over: scale to zero")
    if retention > 0 and age < retention:
        return _Gate(0, False, requeue_after=retention - age,
                     note=f"last-pod retention: {retention - age:.0f}s left")
    remaining = settings.scale_to_zero_grace_period - (sks.proxy_for(now) if sks is not None else 0.0)
    if remaining <= 0:
        return _Gate(0, True, note="proxying for the grace period: scale to zero")
    return _Gate(0, False, requeue_after=remaining, note=f"grace period: {remaining:.0f}s left")


def scale(
    desired: int,
    *,
    now: float,
    settings: ScaleSettings,
    pa: PAStatus,
    sks: SKSStatus | None,
    current_replicas: int | None,
    activator_in_path: Callable[[], bool],
) -> ScaleOutcome:
    """Upstream ``scaler.scale``: bounds, initial scale, the scale-to-zero gate, then the patch.

    ``current_replicas`` is the target's ``spec.replicas`` (``None`` reads as 1, as upstream);
    ``activator_in_path`` is the synchronous activator probe, called only when needed.
    """
    if desired < 0 and pa.active != "Unknown":
        return ScaleOutcome(desired, note="no metrics yet")
    lo, hi = scale_bounds(settings, pa)
    if settings.initial_scale > 1 and not pa.scale_target_initialized and pa.reachable:
        lo = max(settings.initial_scale, lo)
    desired = apply_bounds(lo, hi, desired)
    gate = handle_scale_to_zero(desired, now=now, settings=settings, pa=pa, sks=sks,
                                activator_in_path=activator_in_path)
    if not gate.apply:
        return ScaleOutcome(gate.scale, None, gate.requeue_after, gate.async_probe, gate.note)
    current = 1 if current_replicas is None else current_replicas
    patch = gate.scale if gate.scale != current else None
    return ScaleOutcome(gate.scale, patch, gate.requeue_after, gate.async_probe, gate.note)
