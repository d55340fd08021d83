"""Export a ``keda`` policy block as a KEDA ScaledObject (``keda.sh/v1alpha1``).

The block is a ScaledObject spec under KEDA's own field names, validated by KEDA's admission
rules (:class:`~tidal.policy.keda.config.KedaConfig`). The export adds the ``scaleTargetRef``,
turns durations into the CRD's integer seconds and metadata values into strings, moves the
block's ``annotations`` onto the object's metadata, and validates the result against the
ScaledObject CRD schema of KEDA 2.20 (``schemas/keda_scaledobject.yaml``).

``tidal-metric`` triggers read a tidal metric; KEDA has no such scaler. They are written as
``prometheus`` triggers whose ``query`` is the metric's name (tidal's own Prometheus triggers
read it the same way) with ``ignoreNullValues: "false"``, because a missing tidal metric is a
scaler error; a note asks for a query that returns that quantity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tidal.core.errors import TidalInputError
from tidal.export.common import (
    ExportOptions,
    Manifest,
    ManifestError,
    PolicySource,
    check_name,
    default_name,
    format_number,
    intersect_bounds,
    load_schema,
    object_metadata,
    validate_against_schema,
    whole_seconds,
)
from tidal.policy import validate_policy_block
from tidal.policy.keda.config import DEFAULT_MAX_REPLICA_COUNT, KedaConfig, TriggerConfig

API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"
SCHEMA = "keda_scaledobject.yaml"

#: tidal-metric metadata -> Prometheus scaler metadata.
_TIDAL_TO_PROMETHEUS = {"targetValue": "threshold", "value": "threshold",
                        "activationTargetValue": "activationThreshold", "activationValue": "activationThreshold"}


def export_keda(source: PolicySource, options: ExportOptions) -> Manifest:
    """The ScaledObject for a ``keda`` block."""
    if source.policy_name != "keda":
        raise TidalInputError(f"{source.where}.name",
                              f"a {source.policy_name!r} policy cannot be exported as a KEDA ScaledObject; "
                              "use a 'keda' block")
    block = dict(source.block)
    if "stabilization" in block:
        raise TidalInputError(f"{source.where}.stabilization",
                              "tidal's stabilization wrapper has no ScaledObject field; use "
                              "advanced.horizontalPodAutoscalerConfig.behavior instead")
    _, config, _ = validate_policy_block(block, source.where)
    assert isinstance(config, KedaConfig)
    if source.bounds is not None:
        lo, hi = intersect_bounds(config.minReplicaCount, config.maxReplicaCount or DEFAULT_MAX_REPLICA_COUNT,
                                  source, "minReplicaCount", "maxReplicaCount")
        block.update(minReplicaCount=lo, maxReplicaCount=hi)
        # The narrowed bounds pass KEDA's admission rules again (idleReplicaCount < min, ...).
        _, config, _ = validate_policy_block(block, source.where)
        assert isinstance(config, KedaConfig)
    name = check_name(options.name or default_name(source, "tidal-scaledobject"), "subdomain", "--name")
    target = check_name(options.target_deployment or name, "subdomain", "--target-deployment")
    namespace = None if options.namespace is None else check_name(options.namespace, "label", "--namespace")
    notes: list[str] = []
    manifest = scaled_object(config, name, namespace, target, source.where, options.prometheus_address, notes)
    validate_scaled_object(manifest)
    return Manifest((manifest,), tuple(notes))


def scaled_object(config: KedaConfig, name: str, namespace: str | None, target: str, where: str = "policy",
                  prometheus_address: str | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """The ScaledObject of a validated config."""
    notes = [] if notes is None else notes
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "pollingInterval": whole_seconds(config.pollingInterval, f"{where}.pollingInterval"),
        "cooldownPeriod": whole_seconds(config.cooldownPeriod, f"{where}.cooldownPeriod"),
    }
    if config.initialCooldownPeriod:
        spec["initialCooldownPeriod"] = whole_seconds(config.initialCooldownPeriod, f"{where}.initialCooldownPeriod")
    for key in ("idleReplicaCount", "minReplicaCount", "maxReplicaCount"):
        if getattr(config, key) is not None:
            spec[key] = getattr(config, key)
    if config.fallback is not None:
        spec["fallback"] = config.fallback.model_dump()
    advanced = _advanced(config)
    if advanced:
        spec["advanced"] = advanced
    address = prometheus_address or _first_server_address(config.triggers)
    spec["triggers"] = [_trigger(t, i, where, address, notes) for i, t in enumerate(config.triggers)]
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": object_metadata(name, namespace, config.annotations), "spec": spec}


def _advanced(config: KedaConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hpa = config.advanced.horizontalPodAutoscalerConfig
    if hpa is not None:
        dumped = hpa.model_dump(exclude_none=True, exclude_defaults=False)
        if not dumped.get("name"):
            dumped.pop("name", None)
        for rules in dumped.get("behavior", {}).values():
            if "tolerance" in rules:
                rules["tolerance"] = format_number(rules["tolerance"])  # a quantity: int or string
        if dumped:
            out["horizontalPodAutoscalerConfig"] = dumped
    if config.advanced.restoreToOriginalReplicaCount:
        out["restoreToOriginalReplicaCount"] = True
    modifiers = config.advanced.scalingModifiers
    if modifiers.in_use:
        out["scalingModifiers"] = {k: v for k, v in modifiers.model_dump().items() if v}
    return out


def _first_server_address(triggers: list[TriggerConfig]) -> str | None:
    for t in triggers:
        if t.type == "prometheus" and t.metadata.get("serverAddress"):
            return str(t.metadata["serverAddress"])
    return None


def _trigger(trigger: TriggerConfig, index: int, where: str, address: str | None, notes: list[str]) -> dict[str, Any]:
    kind = trigger.type
    metadata = {k: _metadata_value(v) for k, v in trigger.metadata.items()}
    metric_type = trigger.metricType
    if kind in ("cpu", "memory") and "type" in metadata and metric_type is None:
        metric_type = metadata.pop("type")  # the deprecated spelling of metricType
    if kind == "tidal-metric":
        kind = "prometheus"
        metric = metadata.pop("metric")
        converted = {"query": metric}
        converted.update({_TIDAL_TO_PROMETHEUS[k]: v for k, v in metadata.items()})
        converted["ignoreNullValues"] = "false"  # a missing tidal metric is a scaler error
        metadata = converted
        notes.append(f"triggers[{index}]: the tidal-metric trigger on {metric!r} is written as a prometheus "
                     f"trigger with query {metric!r}; make that query return the same quantity")
    if kind == "prometheus" and "serverAddress" not in metadata:
        if address is None:
            raise TidalInputError(f"{where}.triggers.{index}.metadata.serverAddress",
                                  "a Prometheus trigger needs a server address: set it in the block or "
                                  "pass --prometheus-address")
        metadata = {"serverAddress": address, **metadata}
    out: dict[str, Any] = {"type": kind}
    if trigger.name:
        out["name"] = trigger.name
    if metric_type is not None:
        out["metricType"] = metric_type
    if trigger.useCachedMetrics:
        out["useCachedMetrics"] = True
    out["metadata"] = metadata
    return out


def _metadata_value(value: object) -> str:
    """Trigger metadata is ``map[string]string`` in the CRD."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    return str(value)


# --------------------------------------------------------------------------- validation


def validate_scaled_object(manifest: Mapping[str, Any]) -> None:
    """Validate against the CRD schema, its CEL rule, and KEDA's admission checks."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise ManifestError(KIND, f"expected apiVersion {API_VERSION} and kind {KIND}")
    validate_against_schema(manifest, load_schema(SCHEMA), KIND)
    spec = manifest["spec"]
    # x-kubernetes-validations (CEL), which jsonschema does not run.
    if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", DEFAULT_MAX_REPLICA_COUNT):
        raise ManifestError(f"{KIND}: spec", "minReplicaCount must be less than or equal to maxReplicaCount")
    # The admission webhook's rules, which the keda policy's config implements.
    try:
        validate_policy_block(keda_block_from_manifest(manifest), f"{KIND}: spec")
    except TidalInputError as exc:
        raise ManifestError(exc.where, exc.problem) from None


def keda_block_from_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Read a ScaledObject back into a ``keda`` policy block (``scaleTargetRef`` dropped)."""
    spec = {k: v for k, v in manifest.get("spec", {}).items() if k != "scaleTargetRef"}
    block: dict[str, Any] = {"name": "keda", **spec}
    annotations = manifest.get("metadata", {}).get("annotations")
    if annotations:
        block["annotations"] = dict(annotations)
    return block
