"""Export a policy block as a Kubernetes HorizontalPodAutoscaler (``autoscaling/v2``).

The ``hpa`` policy's block already holds the manifest's ``metrics``, ``behavior``,
``minReplicas`` and ``maxReplicas`` under their API names, validated as the API server does
(:class:`~tidal.policy.hpa.config.HPAConfig`); the export copies them into an HPA object. A
``target_utilization`` block on ``utilization`` or ``cpu_utilization`` converts to a cpu
``Utilization`` target. The result is checked with the official ``kubernetes`` client models
(required fields, types) and must survive their round trip unchanged (no unknown fields).

The controller flags of the block (``tolerance``, ``downscaleStabilization``, ...) are
kube-controller-manager settings, not manifest fields. Where the ``behavior`` API has a per-HPA
equivalent (per-direction ``tolerance``, ``scaleDown.stabilizationWindowSeconds``) and the block
has a behavior, they are written there (same semantics); otherwise a note says what to set.
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
    object_metadata,
    whole_seconds,
)
from tidal.policy import validate_policy_block
from tidal.policy.hpa.behavior import MAX_STABILIZATION_WINDOW_SECONDS
from tidal.policy.hpa.config import DEFAULT_MIN_REPLICAS, HPAConfig

API_VERSION = "autoscaling/v2"
KIND = "HorizontalPodAutoscaler"

#: Block field -> what it is in Kubernetes (all are cluster-wide, not per HPA).
_CONTROLLER_FLAGS = {
    "tolerance": "--horizontal-pod-autoscaler-tolerance",
    "cpu_initialization_period": "--horizontal-pod-autoscaler-cpu-initialization-period",
    "initial_readiness_delay": "--horizontal-pod-autoscaler-initial-readiness-delay",
    "downscale_stabilization": "--horizontal-pod-autoscaler-downscale-stabilization",
    "scale_up_limit_factor": "the scaleUpLimitFactor constant of horizontal.go",
    "scale_up_limit_minimum": "the scaleUpLimitMinimum constant of horizontal.go",
}
_CONVERTIBLE_METRICS = {"utilization": 100.0, "cpu_utilization": 1.0}


def export_hpa(source: PolicySource, options: ExportOptions) -> Manifest:
    """The HPA for an ``hpa`` block (or a ``target_utilization`` block on CPU/utilization)."""
    kind = source.policy_name
    if kind == "hpa":
        block, notes = _hpa_block(source)
    elif kind == "target_utilization":
        block, notes = _target_utilization_block(source)
    else:
        raise TidalInputError(f"{source.where}.name",
                              f"a {kind!r} policy cannot be exported as an HPA; use an 'hpa' block, or "
                              "'target_utilization' on utilization or cpu_utilization")
    _, config, _ = validate_policy_block(block, source.where)
    assert isinstance(config, HPAConfig)
    notes += _check_bounds(config, source)
    name = check_name(options.name or default_name(source, "tidal-hpa"), "subdomain", "--name")
    target = check_name(options.target_deployment or name, "subdomain", "--target-deployment")
    namespace = None if options.namespace is None else check_name(options.namespace, "label", "--namespace")
    manifest = hpa_manifest(config, name, namespace, target)
    notes += _carry_controller_flags(config, manifest["spec"])
    validate_hpa(manifest)
    return Manifest((manifest,), tuple(notes))


# --------------------------------------------------------------------------- blocks


def _hpa_block(source: PolicySource) -> tuple[dict[str, Any], list[str]]:
    block = dict(source.block)
    if "stabilization" in block:
        raise TidalInputError(f"{source.where}.stabilization",
                              "tidal's stabilization wrapper has no HPA field; write the windows as "
                              "behavior.scaleUp/scaleDown.stabilizationWindowSeconds instead")
    _, config, _ = validate_policy_block(block, source.where)
    assert isinstance(config, HPAConfig)
    policy_min = config.min_replicas
    if policy_min is None and source.bounds is not None:
        # The simulation ran with the HPA's own floor (Kubernetes' default), whatever the scenario allows.
        policy_min = DEFAULT_MIN_REPLICAS
    lo, hi = intersect_bounds(policy_min, config.max_replicas, source, "minReplicas", "maxReplicas")
    if lo is not None:
        block["minReplicas"] = lo
    if hi is not None:
        block["maxReplicas"] = hi
    return block, []


def _target_utilization_block(source: PolicySource) -> tuple[dict[str, Any], list[str]]:
    """``target_utilization`` as the HPA it approximates: a cpu Utilization target."""
    _, cfg, stabilization = validate_policy_block(source.block, source.where)
    scale = _CONVERTIBLE_METRICS.get(cfg.metric)
    if scale is None:
        raise TidalInputError(f"{source.where}.metric",
                              f"{cfg.metric!r} has no HPA Resource equivalent; only utilization and "
                              "cpu_utilization convert to a cpu Utilization target")
    percent = cfg.target * scale
    if abs(percent - round(percent)) > 1e-9 or round(percent) < 1:
        raise TidalInputError(f"{source.where}.target",
                              f"averageUtilization is a whole percentage >= 1; {cfg.target:g} gives {percent:g} %")
    up = whole_seconds(stabilization.up_window if stabilization else 0.0, f"{source.where}.stabilization.up_window")
    # target_utilization without a stabilization block scales down at once: say so explicitly,
    # or the HPA would apply its 5-minute default.
    down = whole_seconds(stabilization.down_window if stabilization else 0.0,
                         f"{source.where}.stabilization.down_window")
    behavior: dict[str, Any] = {"scaleUp": {"stabilizationWindowSeconds": up},
                                "scaleDown": {"stabilizationWindowSeconds": down}}
    notes = []
    if cfg.tolerance != 0.1:
        for direction in behavior.values():
            direction["tolerance"] = format_number(cfg.tolerance)
        notes.append(f"tolerance {cfg.tolerance:g} is written as the per-direction behavior tolerance "
                     "(HPAConfigurableTolerance feature, beta)")
    if cfg.metric == "utilization":
        notes.append(f"utilization (busy fraction of slots) {cfg.target:g} is exported as cpu averageUtilization "
                     f"{round(percent)} %; they agree only for a CPU-bound service")
    notes.append(f"window {cfg.window:g}s is not carried: the HPA reads metrics-server's own averaging window")
    notes.append("the HPA's default rate limits apply (scale up by at most max(4 pods, 100 %) per 15 s), "
                 "which target_utilization does not have")
    lo, hi = intersect_bounds(None, None, source, "minReplicas", "maxReplicas")
    block: dict[str, Any] = {
        "name": "hpa",
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": round(percent)}}}],
        "behavior": behavior,
    }
    if lo is not None:
        block["minReplicas"] = lo
    if hi is not None:
        block["maxReplicas"] = hi
    return block, notes


def _check_bounds(config: HPAConfig, source: PolicySource) -> list[str]:
    """``maxReplicas`` is required (the API server's rule); notes on the minReplicas default and zero."""
    if config.max_replicas is None:
        raise TidalInputError(f"{source.where}.maxReplicas",
                              "required by autoscaling/v2; set it in the block or export a scenario (replicas.max)")
    if config.min_replicas is None:
        return ["minReplicas is unset: Kubernetes defaults it to 1"]
    if config.min_replicas == 0:  # HPAConfig already requires an Object or External metric for it
        return ["minReplicas 0 needs the HPAScaleToZero feature gate (alpha)"]
    return []


# --------------------------------------------------------------------------- the object


def hpa_manifest(config: HPAConfig, name: str, namespace: str | None, target: str) -> dict[str, Any]:
    """The ``HorizontalPodAutoscaler`` object for a validated config (manifest fields only)."""
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True, include={"metrics", "behavior"})
    spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}}
    if config.min_replicas is not None:
        spec["minReplicas"] = config.min_replicas
    spec["maxReplicas"] = config.max_replicas
    spec["metrics"] = [_prune(m) for m in dumped["metrics"]]
    if "behavior" in dumped:
        spec["behavior"] = dumped["behavior"]
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": object_metadata(name, namespace), "spec": spec}


_EMPTY_OPTIONAL = {"matchLabels", "matchExpressions", "values", "apiVersion"}


def _prune(value: Any) -> Any:
    """Drop the empty optional fields pydantic fills in (``matchLabels: {}``, ``apiVersion: ''``)."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if not (k in _EMPTY_OPTIONAL and v in ({}, [], ""))}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _carry_controller_flags(config: HPAConfig, spec: dict[str, Any]) -> list[str]:
    """Write flag values the behavior API can hold; note the rest."""
    notes = []
    behavior = spec.get("behavior")
    for field_name, flag in _CONTROLLER_FLAGS.items():
        value = getattr(config, field_name)
        default = HPAConfig.model_fields[field_name].default
        if value == default:
            continue
        if behavior is not None and field_name == "tolerance":
            missing = [d for d in ("scaleUp", "scaleDown") if "tolerance" not in behavior.get(d, {})]
            for direction in missing:
                behavior.setdefault(direction, {})["tolerance"] = format_number(value)
            if missing:
                notes.append(f"tolerance {value:g} is written as behavior.{'/'.join(missing)}.tolerance "
                             "(HPAConfigurableTolerance feature, beta)")
            continue
        if (behavior is not None and field_name == "downscale_stabilization"
                and "stabilizationWindowSeconds" not in behavior.get("scaleDown", {})
                and value == int(value) and value <= MAX_STABILIZATION_WINDOW_SECONDS):
            behavior.setdefault("scaleDown", {})["stabilizationWindowSeconds"] = int(value)
            notes.append(f"downscaleStabilization {value:g}s is written as "
                         "behavior.scaleDown.stabilizationWindowSeconds")
            continue
        notes.append(f"{HPAConfig.model_fields[field_name].alias or field_name} = {value:g} is not part of the "
                     f"HPA object; it is {flag} (cluster-wide)")
    return notes


def hpa_block_from_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Read an HPA object back into an ``hpa`` policy block (the manifest fields only)."""
    spec = manifest.get("spec", {})
    block: dict[str, Any] = {"name": "hpa"}
    for key in ("minReplicas", "maxReplicas", "metrics", "behavior"):
        if key in spec:
            block[key] = spec[key]
    return block


# --------------------------------------------------------------------------- validation


def validate_hpa(manifest: Mapping[str, Any]) -> None:
    """Check ``manifest`` with the official client models and the API server's rules.

    The ``kubernetes`` client deserializes it into ``V2HorizontalPodAutoscaler`` (required
    fields and types); serializing that back must give the same document, so no field was
    unknown to autoscaling/v2 or coerced. The spec then goes through the ``hpa`` config, which
    implements ``pkg/apis/autoscaling/validation`` (enums, bounds, one source per metric).
    """
    try:
        from kubernetes.client import ApiClient
    except ImportError:  # pragma: no cover - a dependency of tidal's export
        raise TidalInputError("kubernetes", "tidal export hpa validates with the official client: "
                                            "pip install kubernetes") from None
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise ManifestError(KIND, f"expected apiVersion {API_VERSION} and kind {KIND}")
    api = ApiClient()
    try:
        obj = api._ApiClient__deserialize(dict(manifest), "V2HorizontalPodAutoscaler")
    except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError is a ValueError
        raise ManifestError(KIND, f"rejected by the kubernetes client models: {_client_error(exc)}") from None
    back = api.sanitize_for_serialization(obj)
    difference = _first_difference(manifest, back)
    if difference is not None:
        raise ManifestError(f"{KIND}: {difference}",
                            "not an autoscaling/v2 field, or not of its type (lost in the client's round trip)")
    try:
        validate_policy_block(hpa_block_from_manifest(manifest), f"{KIND}: spec")
    except TidalInputError as exc:
        raise ManifestError(exc.where, exc.problem) from None


def _client_error(exc: Exception) -> str:
    """The first problem of the client's error (recent clients raise pydantic errors)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except (TypeError, IndexError):
            return str(exc)
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{getattr(exc, 'title', '')} {loc}: {first.get('msg', '')}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first path where two JSON-like values differ, or ``None``."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip(".")
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return path.lstrip(".") or "(top level)"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}.{i}")
            if found is not None:
                return found
        return None
    if a != b or type(a) is not type(b):
        return path.lstrip(".") or "(top level)"
    return None
