"""KEDA triggers ("scalers") as tidal reads them: metric spec, value and activity.

A KEDA scaler turns an event source into ``(metric values, isActive, error)``. In tidal a
trigger reads a tidal metric from the observation's metrics window:

* ``tidal-metric``: metadata ``metric`` (a tidal metric name such as ``queue_length``), target
  ``targetValue`` (or ``value``), activation ``activationTargetValue`` (or ``activationValue``);
* ``prometheus``: KEDA's Prometheus scaler with ``query`` naming the tidal metric, target
  ``threshold`` and ``activationThreshold``; ``ignoreNullValues`` (default true) turns a NaN or
  infinite sample into 0, as KEDA does for an empty or non-finite query result;
* ``cpu`` / ``memory``: Kubernetes Resource metrics (``metricType`` Utilization or AverageValue,
  metadata ``value``). KEDA hands these to the HPA and never uses them for activation.

A metric with no visible sample (``metrics.last(name) is None``) is a scaler error: it counts
towards fallback exactly like an unreachable metrics server.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tidal.core.types import MetricsWindow

EXTERNAL_TYPES = ("tidal-metric", "prometheus")
RESOURCE_TYPES = ("cpu", "memory")
SUPPORTED_TYPES = EXTERNAL_TYPES + RESOURCE_TYPES

# Metadata keys each trigger type accepts. KEDA's Prometheus scaler has more (auth, TLS,
# headers); they configure the HTTP client and mean nothing in tidal, so only the ones that
# exist upstream and are harmless to ignore are accepted.
_TIDAL_KEYS = {"metric", "targetValue", "value", "activationTargetValue", "activationValue"}
_PROMETHEUS_KEYS = {
    "serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues", "namespace",
    "queryParameters", "customHeaders", "unsafeSsl", "timeout", "authModes", "awsRegion",
    "identityOwner", "metricName",
}
_RESOURCE_KEYS = {"value", "type", "containerName"}


@dataclass(frozen=True, slots=True)
class ScalerSpec:
    """One trigger, parsed: what it reads and the HPA metric it becomes."""

    index: int
    trigger_type: str
    trigger_name: str
    #: External metric name as KEDA generates it (``s<index>-<name>``); "" for cpu/memory.
    metric_name: str
    #: The tidal metric read (external) or the pod resource (``cpu``/``memory``).
    source: str
    #: HPA target: threshold for AverageValue/Value, percent for Utilization, cores or MiB for
    #: resource AverageValue.
    target: float
    activation: float
    metric_type: str
    ignore_null_values: bool = True
    use_cached_metrics: bool = False

    @property
    def is_resource(self) -> bool:
        return self.trigger_type in RESOURCE_TYPES


@dataclass(frozen=True, slots=True)
class ScalerReading:
    """A scaler's answer to one query: ``value`` (milli-truncated), activity, or an error."""

    value: float | None
    active: bool
    error: str | None = None


def trunc_milli(value: float) -> float:
    """KEDA carries metric values as milli-quantities: ``int64(value * 1000)`` truncates."""
    if not math.isfinite(value):
        return value
    return int(value * 1000) / 1000.0


def parse_float(value: object, field: str) -> float:
    """Parse a metadata number the way KEDA does (``strconv.ParseFloat``), naming the field."""
    if isinstance(value, bool):
        raise ValueError(f"metadata.{field}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"metadata.{field}: expected a number, got {value!r}")


def parse_bool(value: object, field: str) -> bool:
    """Go ``strconv.ParseBool`` semantics: 1 t T TRUE true True / 0 f F FALSE false False."""
    if isinstance(value, bool):
        return value
    text = str(value)
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"metadata.{field}: expected true or false, got {value!r}")


_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def parse_quantity(value: object, resource: str, field: str) -> float:
    """A Kubernetes quantity in tidal units: cpu in cores (``500m`` = 0.5), memory in MiB
    (``512Mi`` = 512; a plain number is bytes, as in Kubernetes)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None or isinstance(value, bool):
        raise ValueError(f"metadata.{field}: expected a Kubernetes quantity such as 500m or 512Mi, got {value!r}")
    amount = float(match.group(1)) * _SUFFIX[match.group(2)]
    return amount / 2.0**20 if resource == "memory" else amount


def _check_keys(metadata: Mapping[str, object], allowed: set[str], trigger_type: str) -> None:
    unknown = sorted(set(metadata) - allowed)
    if unknown:
        raise ValueError(
            f"metadata has unknown key(s) {', '.join(unknown)} for a {trigger_type} trigger; "
            f"accepted: {', '.join(sorted(allowed))}"
        )


def _either(metadata: Mapping[str, object], first: str, second: str) -> tuple[str, object] | None:
    if first in metadata and second in metadata:
        raise ValueError(f"metadata sets both {first} and {second}; use one")
    if first in metadata:
        return first, metadata[first]
    if second in metadata:
        return second, metadata[second]
    return None


def _positive_target(value: float, field: str) -> float:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"metadata.{field}: must be a finite number > 0 (the HPA rejects other targets), got {value:g}")
    return value


def parse_trigger(index: int, trigger_type: str, name: str, metadata: Mapping[str, object],
                  metric_type: str | None, use_cached_metrics: bool = False) -> ScalerSpec:
    """Build the :class:`ScalerSpec` of trigger ``index``; raise ``ValueError`` naming the problem."""
    if trigger_type not in SUPPORTED_TYPES:
        raise ValueError(f"type: unsupported trigger type {trigger_type!r}; tidal supports {', '.join(SUPPORTED_TYPES)}")
    if trigger_type in RESOURCE_TYPES:
        return _parse_resource(index, trigger_type, name, metadata, metric_type, use_cached_metrics)
    # GetMetricTargetType: external metrics default to AverageValue and cannot use Utilization.
    kind = metric_type or "AverageValue"
    if kind == "Utilization":
        raise ValueError("metricType: Utilization is not supported for external metrics; use AverageValue or Value")
    if trigger_type == "tidal-metric":
        _check_keys(metadata, _TIDAL_KEYS, trigger_type)
        source = metadata.get("metric")
        if not isinstance(source, str) or not source:
            raise ValueError("metadata.metric: required, the tidal metric to read (e.g. queue_length, rps, concurrency)")
        target_kv = _either(metadata, "targetValue", "value")
        if target_kv is None:
            raise ValueError("metadata.targetValue: required (or 'value'), the per-replica target of the metric")
        activation_kv = _either(metadata, "activationTargetValue", "activationValue")
        metric_name = f"s{index}-{source}"
        ignore_null = False
    else:  # prometheus
        _check_keys(metadata, _PROMETHEUS_KEYS, trigger_type)
        source = metadata.get("query")
        if not isinstance(source, str) or not source.strip():
            raise ValueError("metadata.query: required; in tidal it names the metric to read (e.g. queue_length)")
        source = source.strip()
        if "threshold" not in metadata:
            raise ValueError("metadata.threshold: required, the per-replica target of the query value")
        target_kv = ("threshold", metadata["threshold"])
        activation_kv = ("activationThreshold", metadata["activationThreshold"]) if "activationThreshold" in metadata else None
        metric_name = f"s{index}-prometheus"
        ignore_null = parse_bool(metadata.get("ignoreNullValues", True), "ignoreNullValues")
    target = _positive_target(parse_float(target_kv[1], target_kv[0]), target_kv[0])
    if int(target * 1000) < 1:
        # KEDA hands the HPA a milli-quantity target; below 0.001 it would be zero.
        raise ValueError(f"metadata.{target_kv[0]}: must be at least 0.001, got {target:g}")
    activation = 0.0 if activation_kv is None else parse_float(activation_kv[1], activation_kv[0])
    return ScalerSpec(index, trigger_type, name, metric_name, source, target, activation, kind,
                      ignore_null, use_cached_metrics)


def _parse_resource(index: int, trigger_type: str, name: str, metadata: Mapping[str, object],
                    metric_type: str | None, use_cached_metrics: bool) -> ScalerSpec:
    _check_keys(metadata, _RESOURCE_KEYS, trigger_type)
    # The deprecated metadata 'type' is the old spelling of metricType.
    kind = metric_type or str(metadata.get("type") or "Utilization")
    if kind not in ("Utilization", "AverageValue"):
        raise ValueError(f"metricType: a {trigger_type} trigger needs Utilization or AverageValue, got {kind!r}")
    if "value" not in metadata:
        raise ValueError(f"metadata.value: required for a {trigger_type} trigger")
    if kind == "Utilization":
        # KEDA parses a utilization with strconv.ParseInt(value, 10, 32): the HPA's
        # averageUtilization is a whole percentage.
        target = parse_float(metadata["value"], "value")
        if not re.fullmatch(r"[+-]?\d+", str(metadata["value"]).strip()) or isinstance(metadata["value"], bool):
            raise ValueError(f"metadata.value: a Utilization target is a whole percentage, got {metadata['value']!r}")
    else:
        target = parse_quantity(metadata["value"], trigger_type, "value")
    _positive_target(target, "value")
    return ScalerSpec(index, trigger_type, name, "", trigger_type, target, 0.0, kind, True, use_cached_metrics)


def read_scaler(spec: ScalerSpec, metrics: MetricsWindow) -> ScalerReading:
    """Query an external scaler: the latest visible sample of its metric.

    Activity is ``value > activation`` (strict), the rule of ~60 KEDA scalers.
    """
    raw = metrics.last(spec.source)
    if raw is None:
        return ScalerReading(None, False, f"metric {spec.source!r} is not available")
    if not math.isfinite(raw):
        if spec.ignore_null_values:
            raw = 0.0  # KEDA's Prometheus scaler maps an empty/NaN/Inf result to 0 by default
        else:
            return ScalerReading(None, False, f"query {spec.source!r} returned {raw}")
    return ScalerReading(trunc_milli(raw), raw > spec.activation)
