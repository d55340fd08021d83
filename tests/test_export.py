"""``tidal export``: HPA, KEDA ScaledObject and Knative Service manifests from policy blocks.

Each target is exported from its example scenario and validated against the official schema
(the ``kubernetes`` client models for the HPA, the CRD schemas for KEDA and Knative); an HPA
block survives the round trip through its manifest; corrupted manifests are rejected; bad
input exits with status 2 through the CLI handler and writes nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tidal.cli import export as export_cmd
from tidal.core.errors import TidalInputError
from tidal.export import (
    ExportOptions,
    ManifestError,
    PolicySource,
    export,
    hpa_block_from_manifest,
    keda_block_from_manifest,
    kpa_block_from_manifest,
    load_policy_source,
    validate_hpa,
    validate_scaled_object,
    validate_service,
)
from tidal.export.common import SCHEMA_DIR
from tidal.export.knative import parse_go_duration, validate_annotations
from tidal.policy import validate_policy_block

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HPA_EXAMPLE = EXAMPLES / "hpa_scale_down_stabilization.yaml"
KEDA_EXAMPLE = EXAMPLES / "keda_scale_to_zero.yaml"
KPA_EXAMPLE = EXAMPLES / "kpa_panic_spike.yaml"


def block_source(block: dict, bounds: tuple[int, int] | None = None) -> PolicySource:
    return PolicySource(block, "policy", bounds, "test")


def run_cli(argv: list[str]) -> int:
    """The ``tidal`` command line, in-process."""
    from tidal.cli.main import main

    return main(argv)


# --------------------------------------------------------------------------- each target from its example


def test_hpa_from_its_example():
    manifest = export("hpa", load_policy_source(HPA_EXAMPLE))
    doc = manifest.document
    assert (doc["apiVersion"], doc["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
    assert doc["metadata"] == {"name": "hpa-scale-down-stabilization"}
    spec = doc["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "hpa-scale-down-stabilization"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 40)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert "behavior" not in spec  # the example runs the legacy rules; so does the exported HPA
    assert manifest.notes == ()
    validate_hpa(doc)


def test_keda_from_its_example():
    manifest = export("keda", load_policy_source(KEDA_EXAMPLE))
    doc = manifest.document
    assert (doc["apiVersion"], doc["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = doc["spec"]
    assert spec["scaleTargetRef"]["name"] == "keda-scale-to-zero"
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (30, 300)
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 20)
    assert spec["advanced"] == {"horizontalPodAutoscalerConfig": {
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}}}
    prometheus, converted = spec["triggers"]
    assert prometheus == {"type": "prometheus", "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090", "query": "queue_length",
        "threshold": "50", "activationThreshold": "0"}}
    # tidal-metric has no KEDA scaler: a Prometheus query of the same metric, nulls are errors.
    assert converted == {"type": "prometheus", "metadata": {
        "serverAddress": "http://prometheus.monitoring:9090", "query": "concurrency",
        "threshold": "3", "ignoreNullValues": "false"}}
    assert any("tidal-metric" in note for note in manifest.notes)
    validate_scaled_object(doc)


def test_knative_from_its_example():
    manifest = export("knative", load_policy_source(KPA_EXAMPLE), ExportOptions(image="ghcr.io/acme/llm:1"))
    doc = manifest.document
    assert (doc["apiVersion"], doc["kind"]) == ("serving.knative.dev/v1", "Service")
    template = doc["spec"]["template"]
    ann = template["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert ann["autoscaling.knative.dev/metric"] == "concurrency"
    assert ann["autoscaling.knative.dev/target"] == "10"
    assert ann["autoscaling.knative.dev/target-utilization-percentage"] == "70"
    assert ann["autoscaling.knative.dev/window"] == "60s"
    assert ann["autoscaling.knative.dev/panic-window-percentage"] == "10"
    assert ann["autoscaling.knative.dev/panic-threshold-percentage"] == "200"
    assert ann["autoscaling.knative.dev/target-burst-capacity"] == "211"
    assert (ann["autoscaling.knative.dev/min-scale"], ann["autoscaling.knative.dev/max-scale"]) == ("0", "50")
    assert all(isinstance(v, str) for v in ann.values())
    assert template["spec"] == {"containerConcurrency": 10, "containers": [{"image": "ghcr.io/acme/llm:1"}]}
    assert len(manifest.documents) == 1 and manifest.notes == ()  # every knob of the example is carried
    validate_service(doc)


@pytest.mark.parametrize(("target", "example"), [
    ("hpa", KEDA_EXAMPLE), ("hpa", KPA_EXAMPLE), ("keda", HPA_EXAMPLE), ("keda", KPA_EXAMPLE),
    ("knative", HPA_EXAMPLE), ("knative", KEDA_EXAMPLE)])
def test_policy_kind_must_match_the_target(target, example):
    with pytest.raises(TidalInputError) as err:
        export(target, load_policy_source(example))
    assert "policy.name" in str(err.value) and "cannot be exported" in str(err.value)


def test_target_utilization_converts_to_a_cpu_utilization_hpa():
    source = load_policy_source(EXAMPLES / "flash_crowd.yaml")
    assert source.policy_name == "target_utilization"
    manifest = export("hpa", source)
    spec = manifest.document["spec"]
    assert spec["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    # No stabilization wrapper: tidal scales down at once, so the HPA's 5-minute default is overridden.
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert spec["behavior"]["scaleUp"]["tolerance"] == "0"
    validate_hpa(manifest.document)
    cpu = block_source({"name": "target_utilization", "metric": "cpu_utilization", "target": 65,
                        "stabilization": {"down_window": "2m"}}, bounds=(2, 9))
    spec = export("hpa", cpu).document["spec"]
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 65
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 9)


@pytest.mark.parametrize(("block", "field"), [
    ({"metric": "concurrency", "target": 5}, "policy.metric"),
    ({"metric": "utilization", "target": 0.655}, "policy.target"),
])
def test_target_utilization_that_has_no_hpa_form(block, field):
    with pytest.raises(TidalInputError) as err:
        export("hpa", block_source({"name": "target_utilization", **block}, bounds=(1, 5)))
    assert field in str(err.value)


# --------------------------------------------------------------------------- round trips

HPA_BLOCKS = {
    "example": yaml.safe_load(HPA_EXAMPLE.read_text())["policy"],
    "behavior-and-quantities": {
        "name": "hpa", "minReplicas": 2, "maxReplicas": 30,
        "metrics": [
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue",
                                                                          "averageValue": "1.5Gi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "concurrency"},
                                      "target": {"type": "AverageValue", "averageValue": "800m"}}},
            {"type": "External", "external": {
                "metric": {"name": "queue_length", "selector": {"matchLabels": {"queue": "jobs"},
                                                                "matchExpressions": [{"key": "tier", "operator": "In",
                                                                                      "values": ["a", "b"]}]}},
                "target": {"type": "Value", "value": 30}}},
            {"type": "Object", "object": {
                "describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
                "metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "2k"}}},
            {"type": "ContainerResource", "containerResource": {
                "name": "cpu", "container": "server", "target": {"type": "Utilization", "averageUtilization": 75}}},
        ],
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min", "tolerance": "0.05",
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60},
                                     {"type": "Percent", "value": 50, "periodSeconds": 30}]},
            "scaleDown": {"selectPolicy": "Disabled", "tolerance": 0.2},
        },
    },
}


@pytest.mark.parametrize("name", list(HPA_BLOCKS))
def test_hpa_block_round_trips_through_its_manifest(name):
    block = HPA_BLOCKS[name]
    _, original, _ = validate_policy_block(block)
    manifest = export("hpa", block_source(block)).document
    validate_hpa(manifest)
    text = yaml.safe_dump(manifest, sort_keys=False)
    back = hpa_block_from_manifest(yaml.safe_load(text))
    _, restored, _ = validate_policy_block(back)
    assert restored == original


def test_hpa_controller_flags_go_to_the_behavior_when_it_exists():
    block = {"name": "hpa", "maxReplicas": 8, "tolerance": 0.05, "downscaleStabilization": "2m",
             "behavior": {"scaleUp": {"tolerance": "0.2"}}}
    manifest = export("hpa", block_source(block))
    behavior = manifest.document["spec"]["behavior"]
    assert behavior["scaleUp"]["tolerance"] == "0.2"        # the block's own value wins
    assert behavior["scaleDown"] == {"tolerance": "0.05", "stabilizationWindowSeconds": 120}
    no_behavior = export("hpa", block_source({"name": "hpa", "maxReplicas": 8, "cpuInitializationPeriod": "1m"}))
    assert any("--horizontal-pod-autoscaler-cpu-initialization-period" in n for n in no_behavior.notes)


def test_scenario_bounds_narrow_the_policy_bounds():
    block = {"name": "hpa", "minReplicas": 3, "maxReplicas": 80}
    spec = export("hpa", block_source(block, bounds=(1, 40))).document["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 40)
    with pytest.raises(TidalInputError, match="do not overlap"):
        export("hpa", block_source({"name": "hpa", "minReplicas": 50, "maxReplicas": 80}, bounds=(1, 40)))
    # An unset minReplicas is the HPA's default of 1, as the simulation ran, even where the
    # scenario allows zero.
    spec = export("hpa", block_source({"name": "hpa"}, bounds=(0, 40))).document["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 40)


def test_keda_manifest_reads_back_as_the_same_scaledobject():
    block = {"name": "keda", "pollingInterval": "15s", "cooldownPeriod": "2m", "minReplicaCount": 1,
             "maxReplicaCount": 12, "idleReplicaCount": 0, "initialCooldownPeriod": 60,
             "fallback": {"failureThreshold": 3, "replicas": 4, "behavior": "currentReplicasIfHigher"},
             "annotations": {"autoscaling.keda.sh/paused-scale-in": "true"},
             "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"tolerance": 0.05}}},
                          "scalingModifiers": {"formula": "q + r", "target": 10, "metricType": "Value"}},
             "triggers": [{"type": "prometheus", "name": "q", "useCachedMetrics": True, "metadata": {
                              "serverAddress": "http://p:9090", "query": "queue_length", "threshold": 5}},
                          {"type": "prometheus", "name": "r", "metadata": {
                              "serverAddress": "http://p:9090", "query": "rps", "threshold": "20",
                              "ignoreNullValues": False}},
                          {"type": "cpu", "metadata": {"type": "Utilization", "value": "60"}}]}
    manifest = export("keda", block_source(block)).document
    spec = manifest["spec"]
    assert manifest["metadata"]["annotations"] == {"autoscaling.keda.sh/paused-scale-in": "true"}
    assert (spec["pollingInterval"], spec["cooldownPeriod"], spec["initialCooldownPeriod"]) == (15, 120, 60)
    assert spec["advanced"]["scalingModifiers"] == {"formula": "q + r", "target": "10", "metricType": "Value"}
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["tolerance"] == "0.05"
    assert spec["triggers"][0]["metadata"]["threshold"] == "5"
    assert spec["triggers"][1]["metadata"]["ignoreNullValues"] == "false"
    assert spec["triggers"][2] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
    _, original, _ = validate_policy_block(block)
    _, restored, _ = validate_policy_block(keda_block_from_manifest(manifest))
    assert [s for s in restored.scalers()] == [s for s in original.scalers()]
    assert restored.model_dump(exclude={"triggers"}) == original.model_dump(exclude={"triggers"})


def test_knative_manifest_reads_back_as_the_same_kpa_config():
    source = load_policy_source(KPA_EXAMPLE)
    manifest = export("knative", source).document
    _, restored, _ = validate_policy_block(kpa_block_from_manifest(manifest))
    expected_block = {**source.block, "min_scale": 0, "max_scale": 50}
    _, expected, _ = validate_policy_block(expected_block)
    assert restored == expected


def test_knative_cluster_wide_keys():
    block = {"name": "kpa", "max_scale_down_rate": 4, "scale_to_zero_grace_period": "45s",
             "container_concurrency_target_default": 50, "activation_scale": 3, "min_scale": 1}
    plain = export("knative", block_source(block))
    assert len(plain.documents) == 1
    assert any("max-scale-down-rate: 4" in n and "--include-cluster-config" in n for n in plain.notes)
    ann = plain.document["spec"]["template"]["metadata"]["annotations"]
    # The target defaults are pinned by annotations instead of the ConfigMap.
    assert ann["autoscaling.knative.dev/target"] == "50"
    assert ann["autoscaling.knative.dev/target-utilization-percentage"] == "70"
    assert ann["autoscaling.knative.dev/activation-scale"] == "3"
    both = export("knative", block_source(block), ExportOptions(include_cluster_config=True))
    config_map = both.documents[1]
    assert config_map["metadata"] == {"name": "config-autoscaler", "namespace": "knative-serving"}
    assert config_map["data"] == {"max-scale-down-rate": "4", "scale-to-zero-grace-period": "45s"}
    assert both.to_yaml().startswith("---\n")


# --------------------------------------------------------------------------- schema validation


def _mutate(doc: dict, path: str, value=None, delete: bool = False) -> dict:
    doc = copy.deepcopy(doc)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = doc
    for key in keys[:-1]:
        node = node[key]
    if delete:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "delete", "message"), [
    ("spec.maxReplicas", None, True, "maxReplicas"),
    ("spec.maxReplicas", "forty", False, "maxReplicas"),
    ("spec.scaleTargetRef.name", None, True, "name"),
    ("spec.metrics.0.resource.target.averageUtilisation", 60, False, "averageUtilisation"),
    ("spec.metrics.0.type", "Resources", False, "metrics.0.type"),
    ("spec.minReplicas", 50, False, "minReplicas"),
    ("apiVersion", "autoscaling/v1", False, "autoscaling/v2"),
])
def test_corrupted_hpa_is_rejected(path, value, delete, message):
    doc = export("hpa", load_policy_source(HPA_EXAMPLE)).document
    with pytest.raises(ManifestError) as err:
        validate_hpa(_mutate(doc, path, value, delete))
    assert message in str(err.value)


@pytest.mark.parametrize(("path", "value", "delete", "message"), [
    ("spec.pollingInterval", "30s", False, "pollingInterval"),
    ("spec.pollingInterval", 0, False, "pollingInterval"),
    ("spec.cooldownPeriod", 2**31, False, "cooldownPeriod"),
    ("spec.triggers", None, True, "triggers"),
    ("spec.triggers.0.metadata.threshold", 50, False, "threshold"),
    ("spec.triggers.0.kind", "prometheus", False, "triggers.0"),
    ("spec.fallback", {"failureThreshold": 3, "replicas": 2, "behavior": "sometimes"}, False, "fallback.behavior"),
    ("spec.minReplicaCount", 30, False, "minReplicaCount must be less than or equal to maxReplicaCount"),
    ("spec.idleReplicaCount", 5, False, "IdleReplicaCount=5"),
    ("spec.scaleTargetRef", {"kind": "Deployment"}, False, "scaleTargetRef"),
])
def test_corrupted_scaledobject_is_rejected(path, value, delete, message):
    doc = export("keda", load_policy_source(KEDA_EXAMPLE)).document
    with pytest.raises(ManifestError) as err:
        validate_scaled_object(_mutate(doc, path, value, delete))
    assert message in str(err.value)


A = "spec.template.metadata.annotations.autoscaling.knative.dev/"


@pytest.mark.parametrize(("path", "value", "delete", "message"), [
    ("spec.template.spec.containers", None, True, "containers"),
    ("spec.template.spec.containerConcurrency", 2000, False, "containerConcurrency"),
    ("spec.template.spec.containerConcurrency", "10", False, "containerConcurrency"),
    ("spec.template.spec.containers.0.imag", "x", False, "imag"),
    ("metadata.name", "9lives", False, "metadata.name"),
    (A + "window", "5s", False, "window"),
    (A + "window", "60.5s", False, "second precision"),
    (A + "window", "sixty", False, "window"),
    (A + "panic-threshold-percentage", "100", False, "panic-threshold-percentage"),
    (A + "target-burst-capacity", "-2", False, "target-burst-capacity"),
    (A + "metric", "cpu", False, "metric"),
    (A + "min-scale", "60", False, "max-scale=50 is less than min-scale=60"),
    (A + "activation-scale", "1", False, "activation-scale"),
    (A + "activation-scale", "80", False, "max-scale=50 is less than activation-scale=80"),
    (A + "initial-scale", "0", False, "initial-scale=0 not allowed"),
    (A + "targt", "10", False, "targt"),
    (A + "target", 10, False, "target"),
])
def test_corrupted_knative_service_is_rejected(path, value, delete, message):
    doc = export("knative", load_policy_source(KPA_EXAMPLE)).document
    if path.startswith(A):  # the annotation key holds dots and slashes: set it directly
        doc = copy.deepcopy(doc)
        doc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/" + path[len(A):]] = value
    else:
        doc = _mutate(doc, path, value, delete)
    with pytest.raises(ManifestError) as err:
        validate_service(doc)
    assert message in str(err.value)


def test_knative_annotation_rules_follow_upstream():
    validate_annotations({"autoscaling.knative.dev/target-burst-capacity": "-1",
                          "autoscaling.knative.dev/window": "1m30s",
                          "autoscaling.knative.dev/metric-aggregation-algorithm": "weightedExponential",
                          "autoscaling.knative.dev/initial-scale": "0",
                          "other.io/untouched": "anything"}, allow_zero_initial_scale=True)
    with pytest.raises(ManifestError, match="max-scale-limit"):
        validate_annotations({"autoscaling.knative.dev/max-scale": "0"}, max_scale_limit=10)
    assert parse_go_duration("1h2m3.5s") == 3723.5
    assert parse_go_duration("0") == 0.0
    assert parse_go_duration("60") is None and parse_go_duration("") is None


def test_schema_files_carry_their_provenance():
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        header = path.read_text().split("\n\n")[0]
        assert "Provenance" in header and "Licence: Apache-2.0" in header, path.name
        assert "commit" in header, path.name
        yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------- invalid parameters (upstream rules)


@pytest.mark.parametrize(("target", "block", "field"), [
    ("hpa", {"name": "hpa", "maxReplicas": 5,
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": -60}}}, "stabilizationWindowSeconds"),
    ("hpa", {"name": "hpa", "maxReplicas": 5,
             "behavior": {"scaleUp": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": 3600}]}}},
     "periodSeconds"),
    ("hpa", {"name": "hpa", "maxReplicas": 5,
             "behavior": {"scaleUp": {"policies": [{"type": "Percent", "value": 0, "periodSeconds": 60}]}}},
     "policies.0.value"),
    ("hpa", {"name": "hpa", "minReplicas": 6, "maxReplicas": 5}, "must be greater than or equal to minReplicas"),
    ("hpa", {"name": "hpa", "minReplicas": 2}, "maxReplicas"),
    ("hpa", {"name": "hpa", "minReplicas": 0, "maxReplicas": 4}, "minReplicas"),
    ("keda", {"name": "keda", "minReplicaCount": 5, "maxReplicaCount": 2,
              "triggers": [{"type": "prometheus", "metadata": {"query": "rps", "threshold": 1,
                                                                "serverAddress": "http://p"}}]},
     "MinReplicaCount=5 must be less than MaxReplicaCount=2"),
    ("keda", {"name": "keda", "pollingInterval": "2.5s",
              "triggers": [{"type": "prometheus", "metadata": {"query": "rps", "threshold": 1,
                                                                "serverAddress": "http://p"}}]},
     "whole number of seconds"),
    ("keda", {"name": "keda", "triggers": [{"type": "prometheus", "metadata": {"query": "rps", "threshold": 1}}]},
     "serverAddress"),
    ("keda", {"name": "keda", "minReplicaCount": 1,
              "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "50.5"}}]},
     "whole percentage"),
    ("knative", {"name": "kpa", "stable_window": "-5s"}, "stable_window"),
    ("knative", {"name": "kpa", "min_scale": 5, "max_scale": 2}, "max_scale"),
    ("knative", {"name": "kpa", "panic_threshold_percentage": 50}, "panic_threshold_percentage"),
    ("knative", {"name": "kpa", "activation_scale": 3, "min_scale": 4}, "activation-scale"),
])
def test_invalid_parameters_fail_with_upstream_rules(target, block, field):
    with pytest.raises(TidalInputError) as err:
        export(target, block_source(block))
    assert field in str(err.value)


def test_tidal_metric_without_a_prometheus_address_needs_the_option():
    block = {"name": "keda", "triggers": [{"type": "tidal-metric", "metadata": {"metric": "rps", "targetValue": 5}}]}
    with pytest.raises(TidalInputError, match="--prometheus-address"):
        export("keda", block_source(block))
    doc = export("keda", block_source(block), ExportOptions(prometheus_address="http://prom:9090")).document
    assert doc["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://prom:9090"


# --------------------------------------------------------------------------- the command


def test_cli_prints_the_manifest(capsys):
    assert run_cli(["export", "keda", str(KEDA_EXAMPLE), "--name", "jobs", "--namespace", "ml",
                    "--target-deployment", "worker"]) == 0
    out = capsys.readouterr()
    doc = yaml.safe_load(out.out)
    assert doc["metadata"] == {"name": "jobs", "namespace": "ml"}
    assert doc["spec"]["scaleTargetRef"]["name"] == "worker"
    assert "note:" in out.err and "note:" not in out.out


def test_cli_writes_atomically_and_replaces(tmp_path, capsys):
    out = tmp_path / "hpa.yaml"
    out.write_text("old\n")
    assert run_cli(["export", "hpa", str(HPA_EXAMPLE), "--out", str(out)]) == 0
    assert out.read_text() == yaml.safe_dump(export("hpa", load_policy_source(HPA_EXAMPLE)).document, sort_keys=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpa.yaml"]  # no temporary file left behind


@pytest.mark.parametrize("argv", [
    ["export", "keda", str(HPA_EXAMPLE)],
    ["export", "hpa", str(KPA_EXAMPLE)],
    ["export", "knative", str(KEDA_EXAMPLE)],
    ["export", "hpa", str(HPA_EXAMPLE), "--name", "Not_A_Name"],
    ["export", "knative", str(KPA_EXAMPLE), "--target-deployment", "x"],
    ["export", "hpa", "does-not-exist.yaml"],
    ["export", "hpa", "BAD_BLOCK"],
    ["export", "hpa", "INVALID_BLOCK"],
    ["export", "openshift", str(HPA_EXAMPLE)],
])
def test_cli_errors_exit_2_and_write_nothing(argv, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("just a string\n")
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("name: hpa\nmaxReplicas: 4\nbehavior: {scaleDown: {stabilizationWindowSeconds: 7200}}\n")
    argv = [str(bad) if a == "BAD_BLOCK" else str(invalid) if a == "INVALID_BLOCK" else a for a in argv]
    out = tmp_path / "out.yaml"
    try:
        code = run_cli([*argv, "--out", str(out)])
    except SystemExit as exc:  # argparse rejects an unknown target itself, also with status 2
        code = exc.code
    assert code == 2
    assert not out.exists()
    captured = capsys.readouterr()
    assert "error" in captured.err and "Traceback" not in captured.err


def test_bare_blocks_and_scenarios_are_told_apart(tmp_path):
    block = tmp_path / "block.yaml"
    block.write_text("name: hpa\nmaxReplicas: 7\n")
    source = load_policy_source(block)
    assert (source.policy_name, source.bounds, source.where) == ("hpa", None, f"{block}: policy")
    scenario = yaml.safe_load(HPA_EXAMPLE.read_text())
    del scenario["policy"]  # a scenario without a policy block runs target_utilization
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    source = load_policy_source(path)
    assert (source.policy_name, source.bounds) == ("target_utilization", (1, 40))


def test_cli_out_into_a_missing_folder_is_an_input_error(tmp_path, capsys):
    assert run_cli(["export", "hpa", str(HPA_EXAMPLE), "--out", str(tmp_path / "missing" / "x.yaml")]) == 2
    assert "--out" in capsys.readouterr().err
