"""Export a ``kpa`` policy block as a Knative Service (``serving.knative.dev/v1``).

Knative reads per-revision autoscaling settings from ``autoscaling.knative.dev/*`` annotations
on the Service's revision template, and the hard concurrency limit from the template's
``containerConcurrency``. The export writes every annotation-settable knob explicitly, so the
revision behaves as simulated whatever the cluster's defaults are:

* ``class`` (the KPA), ``metric``, ``target`` and ``target-utilization-percentage`` (when set,
  or when a cluster-wide target default of the block differs from Knative's: the annotations
  then pin the effective target), ``window``, ``panic-window-percentage``,
  ``panic-threshold-percentage``, ``metric-aggregation-algorithm``, ``target-burst-capacity``,
  ``scale-down-delay``, ``scale-to-zero-pod-retention-period``, ``initial-scale``,
  ``min-scale``, ``max-scale``, ``activation-scale`` (when above 1), and
  ``serving.knative.dev/progress-deadline`` (when not the default 600 s).

The other keys of the block (``max_scale_up_rate``, ``scale_to_zero_grace_period``, ...) exist
only in the cluster-wide ``config-autoscaler`` ConfigMap. When they differ from Knative's
defaults a note says so, and ``include_cluster_config`` adds that ConfigMap as a second
document. The Service is checked against the Knative Service CRD schema and the annotations
against Knative's annotation validation (``schemas/knative_*.yaml``).
"""

from __future__ import annotations

import math
import re
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
    format_duration,
    format_number,
    intersect_bounds,
    load_schema,
    object_metadata,
    validate_against_schema,
)
from tidal.policy import validate_policy_block
from tidal.policy.kpa.config import KPAConfig, canonical_key

API_VERSION = "serving.knative.dev/v1"
KIND = "Service"
SCHEMA = "knative_service.yaml"
RULES = "knative_autoscaling_annotations.yaml"
PREFIX = "autoscaling.knative.dev/"
KPA_CLASS = "kpa.autoscaling.knative.dev"
PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"
#: Image used when none is given: the user must replace it (a note says so).
PLACEHOLDER_IMAGE = "REPLACE-WITH-YOUR-IMAGE"
#: ``config-defaults`` ``container-concurrency-max-limit`` (Knative's default).
CONTAINER_CONCURRENCY_MAX = 1000

#: Block field -> ``config-autoscaler`` key, for knobs no annotation can set.
_CLUSTER_KEYS = {
    "max_scale_up_rate": "max-scale-up-rate",
    "max_scale_down_rate": "max-scale-down-rate",
    "activator_capacity": "activator-capacity",
    "enable_scale_to_zero": "enable-scale-to-zero",
    "scale_to_zero_grace_period": "scale-to-zero-grace-period",
    "allow_zero_initial_scale": "allow-zero-initial-scale",
    "max_scale_limit": "max-scale-limit",
    "container_concurrency_target_percentage": "container-concurrency-target-percentage",
    "container_concurrency_target_default": "container-concurrency-target-default",
    "requests_per_second_target_default": "requests-per-second-target-default",
}
#: Cluster keys that only shape the target, which the target annotations can pin instead.
_TARGET_KEYS = ("container_concurrency_target_percentage", "container_concurrency_target_default",
                "requests_per_second_target_default")
_DURATION_KEYS = {"scale_to_zero_grace_period"}


def export_knative(source: PolicySource, options: ExportOptions) -> Manifest:
    """The Knative Service for a ``kpa`` block (and the ``config-autoscaler`` ConfigMap if asked)."""
    if source.policy_name != "kpa":
        raise TidalInputError(f"{source.where}.name",
                              f"a {source.policy_name!r} policy cannot be exported as a Knative Service; "
                              "use a 'kpa' block")
    if options.target_deployment is not None:
        raise TidalInputError("--target-deployment", "a Knative Service runs its own revisions; name it with --name")
    block = dict(source.block)
    if "stabilization" in block:
        raise TidalInputError(f"{source.where}.stabilization",
                              "tidal's stabilization wrapper has no Knative annotation; use scale_down_delay")
    _, config, _ = validate_policy_block(block, source.where)
    assert isinstance(config, KPAConfig)
    if source.bounds is not None:
        lo, hi = intersect_bounds(config.min_scale, config.max_scale or None, source, "min_scale", "max_scale")
        block = {k: v for k, v in block.items() if canonical_key(k) not in ("min_scale", "max_scale")}
        block.update(min_scale=lo, max_scale=hi)
        _, config, _ = validate_policy_block(block, source.where)
        assert isinstance(config, KPAConfig)
    name = check_name(options.name or default_name(source, "tidal-service"), "dns1035", "--name")
    namespace = None if options.namespace is None else check_name(options.namespace, "label", "--namespace")
    notes: list[str] = []
    service = knative_service(config, name, namespace, options.image or PLACEHOLDER_IMAGE, notes)
    if options.image is None:
        notes.append(f"spec.template.spec.containers[0].image is a placeholder ({PLACEHOLDER_IMAGE}); "
                     "pass --image or edit it")
    cluster = cluster_settings(config)
    documents = [service]
    if cluster and options.include_cluster_config:
        documents.append(config_autoscaler(cluster))
        notes.append("the config-autoscaler ConfigMap is cluster-wide: applying it changes the defaults of "
                     "every revision in the cluster")
    elif cluster:
        listed = ", ".join(f"{k}: {v}" for k, v in cluster.items())
        notes.append(f"not carried (cluster-wide config-autoscaler keys, no annotation exists): {listed}; "
                     "rerun with --include-cluster-config to write that ConfigMap")
    validate_service(service, allow_zero_initial_scale=config.allow_zero_initial_scale,
                     max_scale_limit=config.max_scale_limit)
    return Manifest(tuple(documents), tuple(notes))


# --------------------------------------------------------------------------- the objects


def revision_annotations(config: KPAConfig, notes: list[str] | None = None) -> dict[str, str]:
    """The revision template's autoscaling annotations for a validated config."""
    notes = [] if notes is None else notes
    ann: dict[str, str] = {f"{PREFIX}class": KPA_CLASS, f"{PREFIX}metric": config.metric}
    target, utilization = config.target, config.target_utilization_percentage
    defaults = KPAConfig.model_fields
    if any(getattr(config, k) != defaults[k].default for k in _TARGET_KEYS) and (target is None or utilization is None):
        # A cluster-wide target default differs from Knative's: pin the effective target.
        resolved = config.metric_target
        utilization = utilization if utilization is not None else _utilization_percent(config)
        target = target if target is not None else resolved.total
        notes.append(f"the block's cluster-wide target defaults are pinned as target {format_number(target)} "
                     f"at {format_number(utilization)} % utilization")
    if target is not None:
        ann[f"{PREFIX}target"] = format_number(target)
    if utilization is not None:
        ann[f"{PREFIX}target-utilization-percentage"] = format_number(utilization)
    ann.update({
        f"{PREFIX}window": format_duration(config.stable_window),
        f"{PREFIX}panic-window-percentage": format_number(config.panic_window_percentage),
        f"{PREFIX}panic-threshold-percentage": format_number(config.panic_threshold_percentage),
        f"{PREFIX}metric-aggregation-algorithm": config.metric_aggregation_algorithm,
        f"{PREFIX}target-burst-capacity": format_number(config.target_burst_capacity),
        f"{PREFIX}scale-down-delay": format_duration(config.scale_down_delay),
        f"{PREFIX}scale-to-zero-pod-retention-period": format_duration(config.scale_to_zero_pod_retention_period),
        f"{PREFIX}initial-scale": str(config.initial_scale),
        f"{PREFIX}min-scale": str(config.min_scale),
        f"{PREFIX}max-scale": str(config.max_scale),
    })
    if config.activation_scale is not None and config.activation_scale > 1:
        ann[f"{PREFIX}activation-scale"] = str(config.activation_scale)
    elif config.activation_scale == 1:
        # Upstream rejects 1 ("must be greater than 1"); it is also what no annotation does.
        notes.append("activation_scale 1 is Knative's behaviour without the annotation; it is left out")
    if config.progress_deadline != defaults["progress_deadline"].default:
        ann[PROGRESS_DEADLINE] = format_duration(config.progress_deadline)
    return ann


def _utilization_percent(config: KPAConfig) -> float:
    if config.metric == "rps":
        return 70.0  # upstream defaultTargetUtilization, not configurable
    return config.container_concurrency_target_fraction * 100.0


def knative_service(config: KPAConfig, name: str, namespace: str | None, image: str,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """The ``Service`` object: autoscaling annotations and containerConcurrency on its template."""
    revision_spec: dict[str, Any] = {}
    if config.container_concurrency:
        revision_spec["containerConcurrency"] = config.container_concurrency
    revision_spec["containers"] = [{"image": image}]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": object_metadata(name, namespace),
        "spec": {"template": {"metadata": {"annotations": revision_annotations(config, notes)},
                              "spec": revision_spec}},
    }


def cluster_settings(config: KPAConfig) -> dict[str, str]:
    """``config-autoscaler`` keys whose value differs from Knative's default (as strings)."""
    out: dict[str, str] = {}
    pinned = set(_TARGET_KEYS)  # carried by the target annotations instead
    for field_name, key in _CLUSTER_KEYS.items():
        value = getattr(config, field_name)
        if field_name in pinned or value == KPAConfig.model_fields[field_name].default:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif field_name in _DURATION_KEYS:
            out[key] = format_duration(value)
        else:
            out[key] = format_number(value)
    return out


def config_autoscaler(data: Mapping[str, str]) -> dict[str, Any]:
    """The ``knative-serving/config-autoscaler`` ConfigMap holding ``data``."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config-autoscaler", "namespace": "knative-serving"}, "data": dict(data)}


def kpa_block_from_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Read a Knative Service back into a ``kpa`` block (the KPA config accepts annotation keys)."""
    template = manifest.get("spec", {}).get("template", {})
    annotations = template.get("metadata", {}).get("annotations", {})
    block: dict[str, Any] = {"name": "kpa"}
    for key, value in annotations.items():
        if key == f"{PREFIX}class":
            continue
        block[key] = _annotation_value(key, value)
    cc = template.get("spec", {}).get("containerConcurrency")
    if cc is not None:
        block["container_concurrency"] = cc
    return block


def _annotation_value(key: str, value: str) -> Any:
    name = canonical_key(key)
    if name in ("metric", "metric_aggregation_algorithm"):
        return value
    field = KPAConfig.model_fields.get(name)
    if field is not None and field.annotation in (int, int | None):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value  # a duration: the config parses it


# --------------------------------------------------------------------------- validation


def validate_service(manifest: Mapping[str, Any], allow_zero_initial_scale: bool = False,
                     max_scale_limit: int = 0) -> None:
    """Validate against the Service CRD schema, the revision's containerConcurrency bound and
    Knative's autoscaling annotation rules (with the given cluster settings)."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise ManifestError(KIND, f"expected apiVersion {API_VERSION} and kind {KIND}")
    validate_against_schema(manifest, load_schema(SCHEMA), KIND)
    try:
        check_name(str(manifest.get("metadata", {}).get("name", "")), "dns1035", f"{KIND}: metadata.name")
    except TidalInputError as exc:
        raise ManifestError(exc.where, exc.problem) from None
    template = manifest.get("spec", {}).get("template", {})
    cc = template.get("spec", {}).get("containerConcurrency")
    if cc is not None and not 0 <= cc <= CONTAINER_CONCURRENCY_MAX:
        raise ManifestError(f"{KIND}: spec.template.spec.containerConcurrency",
                            f"expected 0 <= value <= {CONTAINER_CONCURRENCY_MAX}, got {cc}")
    annotations = template.get("metadata", {}).get("annotations", {})
    validate_annotations(annotations, allow_zero_initial_scale, max_scale_limit)
    # And the KPA's own rules (upstream's config and annotation validation), with the cluster's settings.
    block = kpa_block_from_manifest(manifest)
    block.update(allow_zero_initial_scale=allow_zero_initial_scale, max_scale_limit=max_scale_limit)
    try:
        validate_policy_block(block, f"{KIND}: spec.template")
    except TidalInputError as exc:
        raise ManifestError(exc.where, exc.problem) from None


def validate_annotations(annotations: Mapping[str, str], allow_zero_initial_scale: bool = False,
                         max_scale_limit: int = 0) -> None:
    """Knative's ``ValidateAnnotations`` over the ``autoscaling.knative.dev/*`` annotations.

    Value forms and bounds come from the rules table (``schemas/knative_autoscaling_annotations.yaml``);
    the cross-field rules (min/max/activation scale, the cluster's max-scale-limit and
    allow-zero-initial-scale) are spelled out here as upstream does.
    """
    rules = load_schema(RULES)["annotations"]
    values: dict[str, float] = {}
    for key, text in annotations.items():
        if not key.startswith(PREFIX):
            continue
        short = key[len(PREFIX):]
        rule = rules.get(short)
        if rule is None:
            raise ManifestError(f"{KIND}: {key}", f"not an autoscaling annotation Knative knows "
                                                  f"(one of {', '.join(sorted(rules))})")
        values[short] = _check_value(key, text, rule)
    lo, hi = int(values.get("min-scale", 0)), int(values.get("max-scale", 0))
    if hi != 0 and hi < lo:
        raise ManifestError(f"{KIND}: {PREFIX}max-scale", f"max-scale={hi} is less than min-scale={lo}")
    if max_scale_limit and f"{PREFIX}max-scale" in annotations and not 1 <= hi <= max_scale_limit:
        raise ManifestError(f"{KIND}: {PREFIX}max-scale", f"expected 1 <= value <= {max_scale_limit} (max-scale-limit)")
    if "activation-scale" in values:
        activation = int(values["activation-scale"])
        if lo > activation:
            raise ManifestError(f"{KIND}: {PREFIX}activation-scale",
                                f"min-scale={lo} is greater than activation-scale={activation}")
        if hi != 0 and hi < activation:
            raise ManifestError(f"{KIND}: {PREFIX}activation-scale",
                                f"max-scale={hi} is less than activation-scale={activation}")
    if values.get("initial-scale") == 0 and not allow_zero_initial_scale:
        raise ManifestError(f"{KIND}: {PREFIX}initial-scale", "initial-scale=0 not allowed by cluster")


_INT = re.compile(r"^[+-]?\d+$")


def _check_value(key: str, text: Any, rule: Mapping[str, Any]) -> float:
    """One annotation's value against its rule; returns it as a number (0 for enums)."""
    where = f"{KIND}: {key}"
    if not isinstance(text, str):
        raise ManifestError(where, f"annotation values are strings, got {text!r}")
    kind = rule["kind"]
    if kind == "enum":
        if text not in rule["values"]:
            raise ManifestError(where, f"invalid value {text!r}; expected one of {', '.join(rule['values'])}")
        return 0.0
    if kind in ("int32", "int"):
        if not _INT.match(text) or (kind == "int32" and not -(2**31) <= int(text) < 2**31):
            raise ManifestError(where, f"invalid value {text!r}; expected an integer")
        value = float(int(text))
    elif kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ManifestError(where, f"invalid value {text!r}; expected a number") from None
    else:  # duration
        seconds = parse_go_duration(text)
        if seconds is None:
            raise ManifestError(where, f"invalid value {text!r}; expected a duration such as 60s or 1m30s")
        if not rule["min_s"] <= seconds <= rule["max_s"]:
            raise ManifestError(where, f"expected {rule['min_s']}s <= value <= {rule['max_s']}s, got {text}")
        if rule.get("whole_seconds") and seconds != int(seconds):
            raise ManifestError(where, "must be specified with at most second precision")
        return seconds
    if value in rule.get("also", ()):
        return value
    lo, hi = rule.get("min", -math.inf), rule.get("max", math.inf)
    if not lo <= value <= hi:
        bounds = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
        raise ManifestError(where, f"expected a value {bounds}, got {text}")
    return value


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float | None:
    """Go's ``time.ParseDuration`` in seconds (``None`` when it would fail)."""
    body = text[1:] if text[:1] in "+-" else text
    sign = -1.0 if text.startswith("-") else 1.0
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(body):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        return None
    return sign * total
