"""The ``kpa`` policy block: Knative's autoscaler ConfigMap keys and revision annotations.

Keys are the upstream names in snake_case (``stable_window``, ``panic_threshold_percentage``,
``target_burst_capacity``, ...). Each key may also be written as upstream spells it: kebab-case
(``scale-to-zero-grace-period``), the legacy camelCase annotation (``minScale``), or the full
annotation key (``autoscaling.knative.dev/target``); ``window`` is the annotation name of
``stable_window`` and ``serving.knative.dev/progress-deadline`` that of ``progress_deadline``.
Where a ConfigMap key and an annotation set the same knob, one field holds the effective value
(the annotation wins upstream; here there is one block). Validation follows upstream's rules and
names the field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tidal.config.fields import Duration
from tidal.policy.kpa.decider import DeciderSpec
from tidal.policy.kpa.resources import (
    TARGET_MIN,
    MetricTarget,
    initial_scale,
    panic_window,
    resolve_metric_target,
)
from tidal.policy.kpa.scaler import ScaleSettings
from tidal.policy.registry import PolicyConfig

#: Bounds of the stable window (upstream ``WindowMin``/``WindowMax``).
WINDOW_MIN = 6.0
WINDOW_MAX = 3600.0

_PREFIXES = ("autoscaling.knative.dev/", "serving.knative.dev/")
_RENAMES = {"window": "stable_window"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def canonical_key(key: str) -> str:
    """``autoscaling.knative.dev/minScale`` / ``min-scale`` / ``minScale`` -> ``min_scale``."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    key = _CAMEL.sub("_", key).lower().replace("-", "_")
    return _RENAMES.get(key, key)


def _whole_seconds(value: float, field: str) -> float:
    if value != int(value):
        raise ValueError(f"{field} must be a whole number of seconds, got {value:g}s")
    return value


class KPAConfig(PolicyConfig):
    """Knative Pod Autoscaler parameters, with upstream defaults."""

    # --- what to scale on
    metric: Literal["concurrency", "rps"] = Field("concurrency", description="scaling metric")
    target: float | None = Field(None, ge=TARGET_MIN, description="per-pod total; default from the metric")
    target_utilization_percentage: float | None = Field(
        None, ge=1, le=100, description="percent of the total aimed at; default from the cluster config")
    container_concurrency: int = Field(
        0, ge=0, le=1000, description="hard per-pod concurrency limit of the revision; 0 = none")
    container_concurrency_target_percentage: float = Field(
        70.0, gt=0, le=100, description="concurrency utilisation, percent (values <= 1 read as a fraction)")
    container_concurrency_target_default: float = Field(
        100.0, gt=0, description="soft per-pod concurrency when container_concurrency is 0")
    requests_per_second_target_default: float = Field(200.0, ge=TARGET_MIN, description="per-pod RPS total")
    # --- windows and panic
    stable_window: Duration = Field(60.0, ge=WINDOW_MIN, le=WINDOW_MAX, description="stable averaging window")
    panic_window_percentage: float = Field(10.0, ge=1, le=100, description="panic window, percent of stable")
    panic_threshold_percentage: float = Field(
        200.0, ge=110, le=1000, description="panic when the panic-window count reaches this percent of ready pods")
    metric_aggregation_algorithm: Literal["linear", "weighted-exponential"] = "linear"
    # --- rates, delays, burst capacity
    max_scale_up_rate: float = Field(1000.0, gt=1, description="at most ceil(rate x ready) pods per tick")
    max_scale_down_rate: float = Field(2.0, gt=1, description="at least floor(ready / rate) pods per tick")
    scale_down_delay: Duration = Field(
        0.0, ge=0, le=WINDOW_MAX, description="hold the highest recommendation this long before scaling down")
    target_burst_capacity: float = Field(
        211.0, description="headroom (requests) before the activator leaves the path; -1 = unlimited")
    activator_capacity: float = Field(100.0, ge=1, description="requests one activator absorbs")
    # --- scale to zero and bounds
    enable_scale_to_zero: bool = True
    scale_to_zero_grace_period: Duration = Field(
        30.0, gt=0, description="activator in the path this long before the pods go")
    scale_to_zero_pod_retention_period: Duration = Field(
        0.0, ge=0, description="keep the last pod this long after going idle")
    allow_zero_initial_scale: bool = False
    initial_scale: int = Field(1, ge=0, description="pods a new revision must reach before scaling down")
    activation_scale: int | None = Field(None, ge=1, description="smallest non-zero scale")
    min_scale: int = Field(0, ge=0)
    max_scale_limit: int = Field(0, ge=0, description="cluster cap on max_scale; 0 = none")
    max_scale: int = Field(0, ge=0, description="0 = unbounded")
    progress_deadline: Duration = Field(600.0, gt=0, description="give up activating after this (+30 s)")

    @model_validator(mode="before")
    @classmethod
    def _normalise_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        out: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for key, value in data.items():
            name = canonical_key(key) if isinstance(key, str) else key
            if name not in fields:
                name = key  # leave unknown keys alone so the error names them as written
            if name in out:
                raise ValueError(f"{origin[name]!r} and {key!r} both set {name}")
            out[name] = value
            origin[name] = key
        algorithm = out.get("metric_aggregation_algorithm")
        if algorithm == "weightedExponential":
            out["metric_aggregation_algorithm"] = "weighted-exponential"
        return out

    @field_validator("stable_window")
    @classmethod
    def _stable_whole(cls, value: float) -> float:
        return _whole_seconds(value, "stable window")

    @field_validator("scale_down_delay")
    @classmethod
    def _delay_whole(cls, value: float) -> float:
        return _whole_seconds(value, "scale down delay")

    @field_validator("target_burst_capacity")
    @classmethod
    def _tbc(cls, value: float) -> float:
        if value < 0 and value != -1:
            raise ValueError(f"must be >= 0, or -1 for unlimited, got {value:g}")
        return value

    @field_validator("container_concurrency_target_default")
    @classmethod
    def _cc_target(cls, value: float, info: ValidationInfo) -> float:
        pct = info.data.get("container_concurrency_target_percentage")
        if pct is not None and _fraction(pct) * value < TARGET_MIN:
            raise ValueError(
                f"with container_concurrency_target_percentage={pct:g} this yields a target of "
                f"{_fraction(pct) * value:g}, below the minimum {TARGET_MIN}")
        return value

    @field_validator("initial_scale")
    @classmethod
    def _initial(cls, value: int, info: ValidationInfo) -> int:
        if value == 0 and not info.data.get("allow_zero_initial_scale", False):
            raise ValueError("0 is only allowed with allow_zero_initial_scale: true")
        return value

    @field_validator("max_scale")
    @classmethod
    def _max_scale(cls, value: int, info: ValidationInfo) -> int:
        lo = info.data.get("min_scale")
        limit = info.data.get("max_scale_limit") or 0
        if limit > 0 and not 1 <= value <= limit:
            raise ValueError(f"must be in [1, max_scale_limit={limit}], got {value}")
        if value != 0 and lo is not None and lo > value:
            raise ValueError(f"min_scale ({lo}) must not exceed max_scale ({value})")
        return value

    # ------------------------------------------------------------------ derived
    @property
    def container_concurrency_target_fraction(self) -> float:
        return _fraction(self.container_concurrency_target_percentage)

    @property
    def metric_target(self) -> MetricTarget:
        return resolve_metric_target(
            metric=self.metric,
            container_concurrency=self.container_concurrency,
            container_concurrency_target_fraction=self.container_concurrency_target_fraction,
            container_concurrency_target_default=self.container_concurrency_target_default,
            rps_target_default=self.requests_per_second_target_default,
            target_annotation=self.target,
            target_utilization_percentage_annotation=self.target_utilization_percentage,
        )

    @property
    def panic_window(self) -> float:
        return panic_window(self.stable_window, self.panic_window_percentage)

    @property
    def effective_initial_scale(self) -> int:
        return initial_scale(self.initial_scale, self.allow_zero_initial_scale)

    def decider_spec(self, reachable: bool = True) -> DeciderSpec:
        """Upstream ``MakeDecider``."""
        target = self.metric_target
        return DeciderSpec(
            target_value=target.target,
            total_value=target.total,
            target_burst_capacity=self.target_burst_capacity,
            panic_threshold=self.panic_threshold_percentage / 100.0,
            max_scale_up_rate=self.max_scale_up_rate,
            max_scale_down_rate=self.max_scale_down_rate,
            activator_capacity=self.activator_capacity,
            stable_window=self.stable_window,
            scaling_metric=self.metric,
            scale_down_delay=self.scale_down_delay,
            reachable=reachable,
            activation_scale=self.activation_scale or 0,
            initial_scale=self.effective_initial_scale,
        )

    def scale_settings(self) -> ScaleSettings:
        return ScaleSettings(
            enable_scale_to_zero=self.enable_scale_to_zero,
            stable_window=self.stable_window,
            scale_to_zero_grace_period=self.scale_to_zero_grace_period,
            scale_to_zero_pod_retention_period=self.scale_to_zero_pod_retention_period,
            initial_scale=self.effective_initial_scale,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            target_burst_capacity=self.target_burst_capacity,
            progress_deadline=self.progress_deadline,
        )


def _fraction(percentage: float) -> float:
    """Upstream: values above 1 are percentages, values in (0, 1] legacy fractions."""
    return percentage / 100.0 if percentage > 1.0 else percentage
