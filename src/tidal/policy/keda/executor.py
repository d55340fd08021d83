"""KEDA's ScaledObject scale executor (``pkg/scaling/executor/scale_scaledobjects.go``).

``request_scale`` is the activation state machine that runs once per polling tick: it owns
0 <-> 1 (or idle <-> min) and leaves 1 <-> N to the HPA. It is a pure function of the
ScaledObject, the current replica count, the scalers' verdict and the timestamps; it returns
the replica count to write (``None`` = no write), the new ``lastActiveTime`` and the
conditions KEDA would set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tidal.policy.keda.config import (
    FORCE_ACTIVATION_ANNOTATION,
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    PAUSED_SCALE_IN_ANNOTATION,
    PAUSED_SCALE_OUT_ANNOTATION,
)

READY_MESSAGE = "ScaledObject is defined correctly and is ready for scaling"
ACTIVE_MESSAGE = "Scaling is performed because triggers are active"
FORCED_MESSAGE = "Scaling is performed because activation is being forced by annotation"
INACTIVE_MESSAGE = "Scaling is not performed because triggers are not active"
COOLDOWN_MESSAGE = "Scaler cooling down because triggers are not active"
SCALING_DISABLED = "ScalingDisabled"


@dataclass(frozen=True, slots=True)
class Condition:
    """A Kubernetes condition: ``status`` is "True", "False" or "Unknown"."""

    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class HPAStatus:
    """What KEDA reads of its HPA: ``read_error`` or the ``ScalingActive`` condition (or none)."""

    read_error: bool = False
    scaling_active: Condition | None = None


@dataclass(frozen=True, slots=True)
class ScaledObjectView:
    """The ScaledObject fields the executor reads."""

    min_replica_count: int | None = None
    idle_replica_count: int | None = None
    max_replica_count: int | None = None
    cooldown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    #: ``fallback.replicas`` or ``None`` when there is no fallback section.
    fallback_replicas: int | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespace: str = "default"
    name: str = "tidal"
    target_kind: str = ""


@dataclass(slots=True)
class ScaleResult:
    """The outcome of one ``request_scale``."""

    scale_to: int | None = None
    last_active_time: float | None = None
    conditions: dict[str, Condition] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    paused: bool = False
    #: The ``paused-replicas`` count the controller pins the target to, if set and valid.
    paused_replicas: int | None = None


# --------------------------------------------------------------------------- annotations


def annotation_true(annotations: Mapping[str, str], key: str) -> bool:
    """Present and true with Go ``strconv.ParseBool``; an unparsable value counts as true."""
    if key not in annotations:
        return False
    value = str(annotations[key])
    return value not in ("0", "f", "F", "FALSE", "false", "False")


def needs_pause(annotations: Mapping[str, str]) -> bool:
    """``NeedToBePausedByAnnotation``: ``paused-replicas`` present, or ``paused`` true."""
    return PAUSED_REPLICAS_ANNOTATION in annotations or annotation_true(annotations, PAUSED_ANNOTATION)


def paused_replicas(annotations: Mapping[str, str]) -> int | None:
    value = annotations.get(PAUSED_REPLICAS_ANNOTATION)
    try:
        count = int(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return count if count is not None and count >= 0 else None


def idle_or_min_replica_count(idle_replica_count: int | None, min_replica_count: int | None) -> tuple[bool, int]:
    """``getIdleOrMinimumReplicaCount``: (is idle, the scale-in target)."""
    if idle_replica_count is not None:
        return True, idle_replica_count
    return False, min_replica_count or 0


# --------------------------------------------------------------------------- HPA health


def hpa_active_condition(hpa: HPAStatus | None) -> Condition | None:
    """``getHPAHealth``: the HPAActive condition, or ``None`` when the HPA is not observable."""
    if hpa is None or hpa.read_error or hpa.scaling_active is None:
        return None
    cond = hpa.scaling_active
    if cond.status == "True":
        return Condition("True", "HPAActive", "HPA is actively scaling")
    if cond.status == "False" and cond.reason == SCALING_DISABLED:
        # Zero replicas disable the HPA; KEDA owns that state, so it is healthy.
        return Condition("True", SCALING_DISABLED, cond.message)
    if cond.status == "False":
        return Condition("False", cond.reason or "HPAMetricsUnavailable", "HPA is not actively scaling: " + cond.message)
    return None


# --------------------------------------------------------------------------- RequestScale


def request_scale(
    so: ScaledObjectView,
    *,
    now: float,
    current_replicas: int,
    is_active: bool,
    is_error: bool,
    last_active_time: float | None,
    creation_time: float | None,
    active_triggers: Sequence[str] = (),
    hpa: HPAStatus | None = None,
) -> ScaleResult:
    """One polling tick of ``RequestScale``.

    ``last_active_time`` ``None`` = never active; ``creation_time`` ``None`` = the zero
    timestamp (infinitely old). The returned ``last_active_time`` is the new value when this
    tick sets it, else the old one.
    """
    result = ScaleResult(last_active_time=last_active_time)
    result.conditions["Ready"] = Condition("True", "ScaledObjectReady", READY_MESSAGE)
    annotations = so.annotations
    if needs_pause(annotations):
        result.paused = True
        result.paused_replicas = paused_replicas(annotations)
        result.conditions["Paused"] = Condition("True", "ScaledObjectPaused", "ScaledObject is paused")
        return result
    min_replicas = so.min_replica_count or 0
    forced = annotation_true(annotations, FORCE_ACTIVATION_ANNOTATION)
    if is_active or forced:
        result.conditions["Active"] = Condition("True", "ScalerActive", FORCED_MESSAGE if forced else ACTIVE_MESSAGE)
        if (so.idle_replica_count is not None and current_replicas < min_replicas) or current_replicas == 0:
            _scale_from_zero_or_idle(so, now, current_replicas, active_triggers, forced, result)
        elif is_error:
            result.conditions["Ready"] = Condition("Unknown", "PartialTriggerError",
                                                   "Some triggers defined in ScaledObject are not working correctly")
        else:
            result.last_active_time = now  # refreshed on every active tick
    else:
        result.conditions["Active"] = Condition("False", "ScalerNotActive", INACTIVE_MESSAGE)
        if is_error and so.fallback_replicas is not None and so.fallback_replicas != 0:
            # Hold: the HPA will get fallback metrics; scaling to 0 would disable the HPA.
            pass
        elif is_error and so.fallback_replicas is None:
            result.conditions["Ready"] = Condition("False", "TriggerError",
                                                   "Triggers defined in ScaledObject are not working correctly")
        elif (so.idle_replica_count is not None and current_replicas > so.idle_replica_count) or (
            current_replicas > 0 and min_replicas == 0
        ):
            _scale_to_zero_or_idle(so, now, current_replicas, last_active_time, creation_time, result)
        elif so.idle_replica_count is None and current_replicas < min_replicas:
            result.scale_to = min_replicas  # raise to min while inactive
    hpa_condition = hpa_active_condition(hpa)
    if hpa_condition is not None:
        result.conditions["HPAActive"] = hpa_condition
    return result


def _scale_from_zero_or_idle(so: ScaledObjectView, now: float, current: int, active_triggers: Sequence[str],
                             forced: bool, result: ScaleResult) -> None:
    if annotation_true(so.annotations, PAUSED_SCALE_OUT_ANNOTATION):
        return
    replicas = so.min_replica_count if so.min_replica_count else 1
    result.scale_to = replicas
    target = f"{so.target_kind} {so.namespace}/{so.name} from {current} to {replicas}"
    cause = "caused by forced activation annotation" if forced else "triggered by " + ";".join(active_triggers)
    result.events.append(f"Normal KEDAScaleTargetActivated Scaled {target}, {cause}")
    result.last_active_time = now


def _scale_to_zero_or_idle(so: ScaledObjectView, now: float, current: int, last_active_time: float | None,
                           creation_time: float | None, result: ScaleResult) -> None:
    if annotation_true(so.annotations, PAUSED_SCALE_IN_ANNOTATION):
        return
    if last_active_time is None:
        created = float("-inf") if creation_time is None else creation_time
        expired = created + so.initial_cooldown_period < now
    else:
        expired = last_active_time + so.cooldown_period < now  # strict, as Go's Before()
    if expired:
        _, replicas = idle_or_min_replica_count(so.idle_replica_count, so.min_replica_count)
        result.scale_to = replicas
        result.events.append(
            f"Normal KEDAScaleTargetDeactivated Deactivated {so.target_kind} {so.namespace}/{so.name} "
            f"from {current} to {replicas}"
        )
        result.conditions["Active"] = Condition("False", "ScalerNotActive", INACTIVE_MESSAGE)
    else:
        result.conditions["Active"] = Condition("False", "ScalerCooldown", COOLDOWN_MESSAGE)
