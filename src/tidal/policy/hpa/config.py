"""The ``hpa`` policy's config block: an autoscaling/v2 HPA spec, validated as the API server does.

Field names are the manifest's own (``metrics``, ``behavior``, ``minReplicas``, ...), so a
``metrics:`` or ``behavior:`` block copied from a real HPA works unchanged. The controller flags
(``tolerance``, ``cpuInitializationPeriod``, ...) sit beside them. Validation follows
``pkg/apis/autoscaling/validation`` and names the offending field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tidal.config.fields import Duration
from tidal.policy.hpa import behavior as bh
from tidal.policy.hpa.numeric import MAX_INT32
from tidal.policy.hpa.quantity import Quantity, parse_quantity
from tidal.policy.hpa.spec import ControllerSettings, HPASpec, MetricSpec, MetricTarget
from tidal.policy.registry import PolicyConfig

_MANIFEST = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)

#: A Kubernetes quantity (``500m``, ``2``, ``1.5Gi``); kept exact, dumped as written.
QuantityField = Annotated[Quantity, BeforeValidator(parse_quantity), PlainSerializer(str, return_type=str),
                          WithJsonSchema({"type": ["string", "number"], "examples": ["500m", "2", "512Mi"]})]
Int32 = Annotated[int, Field(le=MAX_INT32)]


class _Manifest(BaseModel):
    model_config = _MANIFEST


# --------------------------------------------------------------------------- metrics


class MetricTargetConfig(_Manifest):
    """``MetricTarget``: ``Utilization`` (averageUtilization), ``Value`` or ``AverageValue``."""

    type: Literal["Utilization", "Value", "AverageValue"]
    value: QuantityField | None = None
    average_value: QuantityField | None = None
    average_utilization: Int32 | None = Field(None, ge=1)

    @field_validator("value", "average_value")
    @classmethod
    def _positive(cls, q: Quantity | None) -> Quantity | None:
        if q is not None and q.sign() != 1:
            raise ValueError("must be positive")
        return q

    def to_target(self) -> MetricTarget:
        return MetricTarget(
            self.type,
            None if self.value is None else self.value.milli,
            None if self.average_value is None else self.average_value.milli,
            self.average_utilization,
        )


class LabelSelectorRequirementConfig(_Manifest):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelectorConfig(_Manifest):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirementConfig, ...] = ()


class MetricIdentifierConfig(_Manifest):
    name: str = Field(min_length=1)
    selector: LabelSelectorConfig | None = None


class ResourceMetricSourceConfig(_Manifest):
    """A resource of the pods (``cpu``, ``memory``, ``gpu``): utilization or average usage."""

    name: Literal["cpu", "memory", "gpu", "nvidia.com/gpu"]
    target: MetricTargetConfig

    @model_validator(mode="after")
    def _one_target(self) -> ResourceMetricSourceConfig:
        t = self.target
        if t.average_utilization is None and t.average_value is None:
            raise ValueError("target.averageUtilization: must set either a target raw value or a target utilization")
        if t.average_utilization is not None and t.average_value is not None:
            raise ValueError("target.averageValue: may not set both a target raw value and a target utilization")
        return self


class ContainerResourceMetricSourceConfig(ResourceMetricSourceConfig):
    container: str = Field(min_length=1)


class PodsMetricSourceConfig(_Manifest):
    metric: MetricIdentifierConfig
    target: MetricTargetConfig

    @model_validator(mode="after")
    def _average(self) -> PodsMetricSourceConfig:
        if self.target.average_value is None:
            raise ValueError("target.averageValue: must specify a positive target averageValue")
        return self


class CrossVersionObjectReferenceConfig(_Manifest):
    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)
    api_version: str = ""


class ObjectMetricSourceConfig(_Manifest):
    described_object: CrossVersionObjectReferenceConfig
    metric: MetricIdentifierConfig
    target: MetricTargetConfig

    @model_validator(mode="after")
    def _target(self) -> ObjectMetricSourceConfig:
        if self.target.value is None and self.target.average_value is None:
            raise ValueError("target.averageValue: must set either a target value or averageValue")
        return self


class ExternalMetricSourceConfig(_Manifest):
    metric: MetricIdentifierConfig
    target: MetricTargetConfig

    @model_validator(mode="after")
    def _target(self) -> ExternalMetricSourceConfig:
        t = self.target
        if t.value is None and t.average_value is None:
            raise ValueError("target.averageValue: must set either a target value for metric or a per-pod target")
        if t.value is not None and t.average_value is not None:
            raise ValueError("target.value: may not set both a target value for metric and a per-pod target")
        return self


_SOURCE_FIELD = {
    "Resource": "resource",
    "ContainerResource": "container_resource",
    "Pods": "pods",
    "Object": "object",
    "External": "external",
}


class MetricSpecConfig(_Manifest):
    """``MetricSpec``: ``type`` names the one source field that must be set."""

    type: Literal["Resource", "ContainerResource", "Pods", "Object", "External"]
    resource: ResourceMetricSourceConfig | None = None
    container_resource: ContainerResourceMetricSourceConfig | None = None
    pods: PodsMetricSourceConfig | None = None
    object: ObjectMetricSourceConfig | None = None
    external: ExternalMetricSourceConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> MetricSpecConfig:
        expected = _SOURCE_FIELD[self.type]
        if getattr(self, expected) is None:
            raise ValueError(f"{to_camel(expected)}: must populate information for the given metric source")
        for name in _SOURCE_FIELD.values():
            if name != expected and getattr(self, name) is not None:
                raise ValueError(f"{to_camel(name)}: must populate the given metric source only")
        return self

    def to_spec(self) -> MetricSpec:
        if self.resource is not None:
            return MetricSpec(self.type, _resource_name(self.resource.name), self.resource.target.to_target())
        if self.container_resource is not None:
            src = self.container_resource
            return MetricSpec(self.type, _resource_name(src.name), src.target.to_target(), container=src.container)
        if self.pods is not None:
            return MetricSpec(self.type, self.pods.metric.name, self.pods.target.to_target(),
                              selector=_selector(self.pods.metric))
        if self.object is not None:
            obj = self.object
            ref = obj.described_object
            return MetricSpec(self.type, obj.metric.name, obj.target.to_target(),
                              described_object={"kind": ref.kind, "name": ref.name, "apiVersion": ref.api_version},
                              selector=_selector(obj.metric))
        assert self.external is not None
        return MetricSpec(self.type, self.external.metric.name, self.external.target.to_target(),
                          selector=_selector(self.external.metric))


def _resource_name(name: str) -> str:
    return "gpu" if name == "nvidia.com/gpu" else name


def _selector(metric: MetricIdentifierConfig) -> dict[str, Any] | None:
    return None if metric.selector is None else metric.selector.model_dump(by_alias=True)


def _default_metrics() -> tuple[MetricSpecConfig, ...]:
    # SetDefaults_HorizontalPodAutoscaler: no metrics means CPU at 80 % of request.
    return (MetricSpecConfig.model_validate(
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}),)


# --------------------------------------------------------------------------- behavior


class HPAScalingPolicyConfig(_Manifest):
    type: Literal["Pods", "Percent"]
    value: Int32 = Field(gt=0)
    period_seconds: int = Field(gt=0, le=bh.MAX_PERIOD_SECONDS)

    def to_policy(self) -> bh.ScalingPolicy:
        return bh.ScalingPolicy(self.type, self.value, self.period_seconds)


class HPAScalingRulesConfig(_Manifest):
    stabilization_window_seconds: int | None = Field(None, ge=0, le=bh.MAX_STABILIZATION_WINDOW_SECONDS)
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: tuple[HPAScalingPolicyConfig, ...] | None = None
    tolerance: QuantityField | None = None

    @field_validator("policies")
    @classmethod
    def _at_least_one(cls, policies: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        # An explicit empty list survives defaulting and is rejected (only a missing list is defaulted).
        if policies is not None and not policies:
            raise ValueError("must specify at least one Policy")
        return policies

    @field_validator("tolerance")
    @classmethod
    def _nonnegative(cls, q: Quantity | None) -> Quantity | None:
        if q is not None and q.sign() < 0:
            raise ValueError("must be greater than or equal to 0")
        return q

    def to_rules(self) -> bh.ScalingRules:
        return bh.ScalingRules(
            self.stabilization_window_seconds,
            self.select_policy,
            None if self.policies is None else tuple(p.to_policy() for p in self.policies),
            None if self.tolerance is None else self.tolerance.as_float(),
        )


class HPABehaviorConfig(_Manifest):
    scale_up: HPAScalingRulesConfig | None = None
    scale_down: HPAScalingRulesConfig | None = None

    def to_behavior(self) -> bh.Behavior:
        return bh.Behavior(None if self.scale_up is None else self.scale_up.to_rules(),
                           None if self.scale_down is None else self.scale_down.to_rules())


# --------------------------------------------------------------------------- the policy block


#: ``minReplicas`` when the manifest leaves it out (the API server's defaulting).
DEFAULT_MIN_REPLICAS = 1


class HPAConfig(PolicyConfig):
    """Parameters of the ``hpa`` policy (manifest names; controller flags beside them)."""

    model_config = _MANIFEST

    metrics: tuple[MetricSpecConfig, ...] = Field(default_factory=_default_metrics,
                                                  description="autoscaling/v2 MetricSpec list (default: cpu 80 %)")
    behavior: HPABehaviorConfig | None = Field(None, description="autoscaling/v2 behavior; absent = legacy rules")
    min_replicas: Int32 | None = Field(None, ge=0, description="lower bound (default: 1, as in Kubernetes)")
    max_replicas: Int32 | None = Field(None, ge=1, description="upper bound (default: none, i.e. 2^31-1)")
    tolerance: float = Field(0.1, ge=0, description="--horizontal-pod-autoscaler-tolerance")
    cpu_initialization_period: Duration = Field(300.0, ge=0,
                                                description="--horizontal-pod-autoscaler-cpu-initialization-period")
    initial_readiness_delay: Duration = Field(30.0, ge=0,
                                              description="--horizontal-pod-autoscaler-initial-readiness-delay")
    downscale_stabilization: Duration = Field(300.0, ge=0,
                                              description="--horizontal-pod-autoscaler-downscale-stabilization")
    scale_up_limit_factor: float = Field(2.0, gt=0,
                                         description="legacy path: growth per sync at most factor x current")
    scale_up_limit_minimum: float = Field(4.0, ge=0, description="legacy path: ... or at least this many replicas")

    @field_validator("metrics")
    @classmethod
    def _default_when_empty(cls, metrics: tuple[MetricSpecConfig, ...]) -> tuple[MetricSpecConfig, ...]:
        return metrics or _default_metrics()

    @model_validator(mode="after")
    def _bounds(self) -> HPAConfig:
        if self.max_replicas is not None and self.max_replicas < (self.min_replicas or DEFAULT_MIN_REPLICAS):
            raise ValueError(f"maxReplicas ({self.max_replicas}) must be greater than or equal to "
                             f"minReplicas ({self.min_replicas or DEFAULT_MIN_REPLICAS})")
        if self.min_replicas == 0 and not any(m.type in ("Object", "External") for m in self.metrics):
            # The API server's rule (HPAScaleToZero): only a metric that exists without pods can
            # bring the target back from zero.
            raise ValueError("minReplicas: must be greater than or equal to 1 (0 is allowed only with an "
                             "Object or External metric and the HPAScaleToZero feature gate)")
        return self

    def to_spec(self) -> HPASpec:
        """The plain HPA spec: unset minReplicas is 1 (Kubernetes' default), unset maxReplicas
        2^31-1 (the scenario's bounds still apply)."""
        return HPASpec(
            max_replicas=MAX_INT32 if self.max_replicas is None else self.max_replicas,
            min_replicas=DEFAULT_MIN_REPLICAS if self.min_replicas is None else self.min_replicas,
            metrics=tuple(m.to_spec() for m in self.metrics),
            behavior=None if self.behavior is None else self.behavior.to_behavior(),
        )

    def to_settings(self) -> ControllerSettings:
        return ControllerSettings(
            tolerance=self.tolerance,
            cpu_initialization_period=self.cpu_initialization_period,
            delay_of_initial_readiness_status=self.initial_readiness_delay,
            downscale_stabilization_window=self.downscale_stabilization,
            scale_up_limit_factor=self.scale_up_limit_factor,
            scale_up_limit_minimum=self.scale_up_limit_minimum,
        )
