"""The ``keda`` policy's configuration: a ScaledObject spec with KEDA's field names.

Validation follows KEDA's admission checks (``CheckReplicaCountBoundsAreValid``,
``CheckFallbackValid``, ``ValidateAndCompileScalingModifiers``, the cpu/memory-only
scale-to-zero rule) so a ScaledObject that KEDA rejects is rejected here too, with the same
message where KEDA's tests pin one. The checks are also exposed as plain functions for the
conformance tests.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tidal.config.fields import Duration
from tidal.policy.keda.expr import ExprError, compile_formula
from tidal.policy.keda.scalers import RESOURCE_TYPES, ScalerSpec, parse_trigger
from tidal.policy.registry import PolicyConfig

#: ScaledObject defaults (KEDA ``scaledobject_types.go``, ``scale_executor.go``).
DEFAULT_MAX_REPLICA_COUNT = 100
#: ``autoscaling.keda.sh/*`` annotations the executor and the HPA builder read.
PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
PAUSED_SCALE_IN_ANNOTATION = "autoscaling.keda.sh/paused-scale-in"
PAUSED_SCALE_OUT_ANNOTATION = "autoscaling.keda.sh/paused-scale-out"
FORCE_ACTIVATION_ANNOTATION = "autoscaling.keda.sh/force-activation"

FallbackBehavior = Literal["static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower",
                           "scalingModifiers"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- pure checks


def hpa_min_replicas(min_replica_count: int | None) -> int:
    """``GetHPAMinReplicas``: the HPA never goes below 1, so 0 (or unset) becomes 1."""
    return min_replica_count if min_replica_count is not None and min_replica_count > 0 else 1


def hpa_max_replicas(max_replica_count: int | None) -> int:
    """``GetHPAMaxReplicas``: unset means 100."""
    return DEFAULT_MAX_REPLICA_COUNT if max_replica_count is None else max_replica_count


def check_replica_count_bounds(min_replica_count: int | None, max_replica_count: int | None,
                               idle_replica_count: int | None) -> None:
    """``CheckReplicaCountBoundsAreValid``: raise ``ValueError`` with KEDA's message."""
    low = hpa_min_replicas(min_replica_count) if min_replica_count is not None else 0
    high = hpa_max_replicas(max_replica_count)
    if low > high:
        raise ValueError(f"MinReplicaCount={low} must be less than MaxReplicaCount={high}")
    if idle_replica_count is not None and idle_replica_count >= low:
        raise ValueError(f"IdleReplicaCount={idle_replica_count} must be less than MinReplicaCount={low}")


def check_fallback_valid(failure_threshold: int | None, replicas: int | None, trigger_types: list[str],
                         using_scaling_modifiers: bool) -> None:
    """``CheckFallbackValid`` (``None`` threshold and replicas = no fallback section)."""
    if failure_threshold is None and replicas is None:
        return
    if (failure_threshold or 0) < 0 or (replicas or 0) < 0:
        raise ValueError(
            f"fallback: FailureThreshold={failure_threshold} & Replicas={replicas} must both be greater than or equal to 0"
        )
    if not using_scaling_modifiers and all(t in RESOURCE_TYPES for t in trigger_types):
        raise ValueError("fallback: it is not supported by the CPU & memory scalers; add another trigger")


# --------------------------------------------------------------------------- sections


class FallbackConfig(_Spec):
    """``spec.fallback``: replicas to hold after ``failureThreshold`` consecutive scaler errors."""

    failureThreshold: int
    replicas: int
    behavior: FallbackBehavior = "static"


class TriggerConfig(_Spec):
    """``spec.triggers[i]``: ``type``, ``metadata`` and optional ``name``/``metricType``."""

    type: str
    name: str = ""
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    metricType: Literal["AverageValue", "Value", "Utilization"] | None = None
    useCachedMetrics: bool = False


class ScalingModifiersConfig(_Spec):
    """``spec.advanced.scalingModifiers``: a formula over named triggers -> one composite metric."""

    formula: str = ""
    target: str = ""
    activationTarget: str = ""
    metricType: Literal["AverageValue", "Value", "Utilization", ""] = ""

    @field_validator("target", "activationTarget", mode="before")
    @classmethod
    def _number_as_string(cls, value: Any) -> Any:
        # KEDA types these as strings; YAML users write numbers.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return repr(value) if isinstance(value, float) else str(value)
        return value

    @property
    def in_use(self) -> bool:
        """``IsUsingModifiers``: any field set."""
        return bool(self.formula or self.target or self.activationTarget or self.metricType)

    @property
    def effective_metric_type(self) -> str:
        return self.metricType or "AverageValue"


class HPAScalingPolicy(_Spec):
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    periodSeconds: int = Field(gt=0, le=1800)


class HPAScalingRules(_Spec):
    """``behavior.scaleUp`` / ``scaleDown``; missing fields take Kubernetes' defaults."""

    stabilizationWindowSeconds: int | None = Field(None, ge=0, le=3600)
    selectPolicy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[HPAScalingPolicy] | None = Field(None, min_length=1)
    tolerance: float | None = Field(None, ge=0)


class HPABehavior(_Spec):
    scaleUp: HPAScalingRules | None = None
    scaleDown: HPAScalingRules | None = None


class HPAConfig(_Spec):
    """``spec.advanced.horizontalPodAutoscalerConfig``."""

    name: str = ""
    behavior: HPABehavior | None = None


class AdvancedConfig(_Spec):
    horizontalPodAutoscalerConfig: HPAConfig | None = None
    scalingModifiers: ScalingModifiersConfig = Field(default_factory=ScalingModifiersConfig)
    #: Accepted for compatibility; it only matters when a ScaledObject is deleted.
    restoreToOriginalReplicaCount: bool = False


# --------------------------------------------------------------------------- ScaledObject


class KedaConfig(PolicyConfig):
    """A KEDA ScaledObject (``spec`` fields, plus ``annotations`` standing in for metadata).

    ``pollingInterval`` (30 s) is how often KEDA checks activity; ``cooldownPeriod`` (300 s) is
    how long after the last active check it scales to ``idleReplicaCount`` or to zero;
    ``minReplicaCount`` (unset = 0) and ``maxReplicaCount`` (100) bound the HPA that does 1 <-> N.
    """

    pollingInterval: Duration = Field(30.0, ge=1, description="seconds between activity checks")
    cooldownPeriod: Duration = Field(300.0, ge=0, description="wait after the last active check before scaling in to idle/zero")
    initialCooldownPeriod: Duration = Field(0.0, ge=0, description="grace after creation before the first scale-in")
    minReplicaCount: int | None = Field(None, ge=0, description="unset means 0 (scale to zero)")
    maxReplicaCount: int | None = Field(None, ge=1, description="unset means 100")
    idleReplicaCount: int | None = Field(None, ge=0)
    fallback: FallbackConfig | None = None
    triggers: list[TriggerConfig] = Field(min_length=1)
    advanced: AdvancedConfig = Field(default_factory=AdvancedConfig)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validate_scaled_object(self) -> KedaConfig:
        # Parse every trigger first so a bad trigger is reported by index.
        for i, trigger in enumerate(self.triggers):
            try:
                parse_trigger(i, trigger.type, trigger.name, trigger.metadata, trigger.metricType,
                              trigger.useCachedMetrics)
            except ValueError as exc:
                raise ValueError(f"triggers.{i}.{exc}") from None
        check_replica_count_bounds(self.minReplicaCount, self.maxReplicaCount, self.idleReplicaCount)
        modifiers = self.advanced.scalingModifiers
        types = [t.type for t in self.triggers]
        if self.fallback is not None:
            check_fallback_valid(self.fallback.failureThreshold, self.fallback.replicas, types, modifiers.in_use)
        if modifiers.in_use:
            self._validate_modifiers()
        if self.fallback is not None and self.fallback.behavior == "scalingModifiers" and not modifiers.formula:
            raise ValueError("fallback.behavior: scalingModifiers needs advanced.scalingModifiers.formula")
        if all(t in RESOURCE_TYPES for t in types) and not self.minReplicaCount:
            raise ValueError("scaledobject has only cpu/memory triggers AND minReplica is 0 "
                             "(scale to zero doesn't work in this case)")
        return self

    def _validate_modifiers(self) -> None:
        sm = self.advanced.scalingModifiers
        if not sm.formula:
            raise ValueError("advanced.scalingModifiers.formula: ScalingModifiers.Formula is mandatory")
        if not sm.target:
            raise ValueError("advanced.scalingModifiers.target: formula is given but target is empty")
        # Compile and run once with dummy values, as KEDA does, so a formula naming an
        # undefined trigger (or failing on numbers) is rejected up front.
        names = {t.name: -1.0 for t in self.triggers if t.type not in RESOURCE_TYPES and t.name}
        try:
            compile_formula(sm.formula, names).run(names)
        except ExprError as exc:
            raise ValueError(f"advanced.scalingModifiers.formula: error validating formula: {exc}") from None
        target = _parse_go_float(sm.target)
        if target is None or not target > 0:
            raise ValueError(f"advanced.scalingModifiers.target: must be a number > 0, got {sm.target!r}")
        if sm.metricType == "Utilization":
            raise ValueError("advanced.scalingModifiers.metricType: Utilization is not supported; "
                             "it needs to be AverageValue or Value for external metrics")
        if sm.activationTarget:
            activation = _parse_go_float(sm.activationTarget)
            if activation is None or not math.isfinite(activation):
                raise ValueError(f"advanced.scalingModifiers.activationTarget: expected a number, got {sm.activationTarget!r}")

    # ------------------------------------------------------------------ derived values

    def scalers(self) -> list[ScalerSpec]:
        """The parsed triggers, in order."""
        return [parse_trigger(i, t.type, t.name, t.metadata, t.metricType, t.useCachedMetrics)
                for i, t in enumerate(self.triggers)]

    @property
    def hpa_min(self) -> int:
        return hpa_min_replicas(self.minReplicaCount)

    @property
    def hpa_max(self) -> int:
        return hpa_max_replicas(self.maxReplicaCount)


def _parse_go_float(text: str) -> float | None:
    try:
        return float(text.strip())
    except (ValueError, AttributeError):
        return None
