"""What every export shares: reading the policy source, names, schemas, YAML and atomic writes.

An export reads a tidal policy block (a bare ``{name: ..., ...}`` block or a whole scenario
file with a ``policy:`` key), validates it with the policy's own config model (the upstream
rules), builds the Kubernetes object, validates that against the published schema and returns
it as a :class:`Manifest`: the documents plus notes on what the manifest cannot carry.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tidal.config.loader import load_yaml, scenario_from_dict
from tidal.core.errors import TidalInputError

# --------------------------------------------------------------------------- inputs and outputs


@dataclass(frozen=True)
class PolicySource:
    """A policy block to export and where it came from.

    ``where`` prefixes field paths in errors (``file: policy``); ``bounds`` is the scenario's
    ``replicas`` ``(min, max)`` when the block came from a scenario (the simulated policy ran
    inside those bounds, so the manifest takes them too); ``name`` is the scenario's name.
    """

    block: Mapping[str, Any]
    where: str
    bounds: tuple[int, int] | None = None
    name: str | None = None

    @property
    def policy_name(self) -> str:
        return str(self.block.get("name"))


@dataclass(frozen=True)
class ExportOptions:
    """The object's identity and the few facts a policy block cannot know."""

    name: str | None = None
    namespace: str | None = None
    #: The Deployment to scale (HPA, KEDA); default: the object's name.
    target_deployment: str | None = None
    #: Container image of the Knative Service (a placeholder when unset).
    image: str | None = None
    #: Prometheus address for KEDA triggers that have none (``tidal-metric`` triggers become
    #: Prometheus triggers).
    prometheus_address: str | None = None
    #: Knative: also write the ``config-autoscaler`` ConfigMap for cluster-wide keys.
    include_cluster_config: bool = False


@dataclass(frozen=True)
class Manifest:
    """Kubernetes documents and notes on what they do not carry (for the user to act on)."""

    documents: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def document(self) -> dict[str, Any]:
        """The main object (the first document)."""
        return self.documents[0]

    def to_yaml(self) -> str:
        """The documents as YAML, keys in the order written (``---`` before each of several)."""
        if len(self.documents) == 1:
            return yaml.safe_dump(self.documents[0], sort_keys=False)
        return yaml.safe_dump_all(list(self.documents), sort_keys=False, explicit_start=True)


class ManifestError(TidalInputError):
    """A manifest that the target system's schema or validation rules reject."""


# --------------------------------------------------------------------------- reading the source


#: Keys only a scenario file has (a bare policy block never does).
_SCENARIO_KEYS = frozenset({"policy", "workload", "service"})


def load_policy_source(path: str | Path) -> PolicySource:
    """Read ``path``: a bare policy block, or a scenario whose ``policy:`` block is exported."""
    path = Path(path)
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise TidalInputError(str(path),
                              "expected a policy block ({name: hpa, ...}) or a scenario with a 'policy:' key")
    if _SCENARIO_KEYS & set(data):
        # A scenario (its policy block defaults to target_utilization, as in a simulation).
        scenario = scenario_from_dict(data, base_dir=path.parent, source=str(path))
        return PolicySource(dict(scenario.policy), f"{path}: policy",
                            (scenario.replicas.min, scenario.replicas.max), scenario.name)
    if "name" not in data:
        raise TidalInputError(str(path),
                              "expected a policy block with a 'name' key, or a scenario with a 'policy:' key")
    return PolicySource(dict(data), f"{path}: policy", None, None)


def intersect_bounds(policy_min: int | None, policy_max: int | None, source: PolicySource,
                     min_field: str, max_field: str) -> tuple[int | None, int | None]:
    """The policy's own bounds narrowed by the scenario's ``replicas`` (as the simulation ran)."""
    if source.bounds is None:
        return policy_min, policy_max
    lo, hi = source.bounds
    new_min = lo if policy_min is None else max(policy_min, lo)
    new_max = hi if policy_max is None else min(policy_max, hi)
    if new_min > new_max:
        raise TidalInputError(
            f"{source.where}.{max_field}",
            f"the policy's [{min_field}, {max_field}] = [{policy_min}, {policy_max}] and the scenario's "
            f"replicas [{lo}, {hi}] do not overlap")
    return new_min, new_max


# --------------------------------------------------------------------------- names

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def check_name(value: str, kind: str, where: str) -> str:
    """Validate a Kubernetes name: ``subdomain`` (DNS-1123, most objects), ``label`` (DNS-1123
    label: namespaces) or ``dns1035`` (Knative Services, which become DNS host names)."""
    if kind == "subdomain":
        ok = len(value) <= 253 and _DNS1123_SUBDOMAIN.match(value)
        rule = ("a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending "
                "alphanumeric, at most 253 characters")
    elif kind == "label":
        ok = len(value) <= 63 and _DNS1123_LABEL.match(value)
        rule = ("a DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric, "
                "at most 63 characters")
    else:
        ok = len(value) <= 63 and _DNS1035_LABEL.match(value)
        rule = ("a DNS-1035 label: lower-case letters, digits and '-', starting with a letter, ending "
                "alphanumeric, at most 63 characters")
    if not ok:
        raise TidalInputError(where, f"{value!r} is not a valid name; expected {rule}")
    return value


def default_name(source: PolicySource, fallback: str) -> str:
    """A name from the scenario's name (or ``fallback``), folded into a DNS-1035 label."""
    text = (source.name or fallback).lower()
    text = re.sub(r"[^a-z0-9-]+", "-", text).strip("-")
    text = re.sub(r"^[^a-z]+", "", text)[:63].rstrip("-")
    return text or fallback


def object_metadata(name: str, namespace: str | None, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# --------------------------------------------------------------------------- values


def whole_seconds(seconds: float, where: str) -> int:
    """A duration as the integer seconds a Kubernetes field holds; fractions are an error."""
    if not math.isfinite(seconds) or seconds != int(seconds):
        raise TidalInputError(where, f"must be a whole number of seconds in the manifest, got {seconds:g}s")
    return int(seconds)


def format_number(value: float) -> str:
    """A number as Kubernetes / Go parsers read it: ``60``, ``0.5``, ``1e-05``."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_duration(seconds: float) -> str:
    """A Go ``time.ParseDuration`` string: ``60s``, ``1.5s``."""
    return f"{format_number(seconds)}s"


# --------------------------------------------------------------------------- schemas

#: Schema data copied from upstream, each file with its provenance header.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@cache
def load_schema(filename: str) -> dict[str, Any]:
    """A schema (or rules table) shipped in :mod:`tidal.export.schemas`."""
    return yaml.safe_load((SCHEMA_DIR / filename).read_text(encoding="utf-8"))


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected instead of pruned.

    The API server silently drops fields a structural schema does not list; a field tidal
    writes that would be dropped is a bug, so objects that list their properties (and do not
    preserve unknown fields) get ``additionalProperties: false`` here.
    """
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


def validate_against_schema(document: Mapping[str, Any], schema: Mapping[str, Any], what: str) -> None:
    """Validate with ``jsonschema`` (int32/int64 formats checked); raise :class:`ManifestError`
    naming the first offending path."""
    import jsonschema

    checker = jsonschema.FormatChecker()
    for fmt, (lo, hi) in _INT_RANGES.items():
        checker.checks(fmt)(lambda v, lo=lo, hi=hi: not isinstance(v, int) or isinstance(v, bool) or lo <= v <= hi)
    validator = jsonschema.Draft7Validator(strict(schema), format_checker=checker)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ManifestError(f"{what}: {path}", f"rejected by the schema: {err.message}")


# --------------------------------------------------------------------------- writing


def write_atomic(path: str | Path, text: str, where: str = "--out") -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place: a failure leaves
    ``path`` as it was."""
    path = Path(path)
    if path.is_dir():
        raise TidalInputError(where, f"{path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise TidalInputError(where, f"folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a manifest is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
