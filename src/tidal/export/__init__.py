"""Manifest export: a tidal policy block as the Kubernetes object that runs it in a cluster.

``tidal export hpa|keda|knative POLICY.yaml`` writes an autoscaling/v2 HorizontalPodAutoscaler,
a KEDA ScaledObject or a Knative Service from a policy block (or a scenario's ``policy:``).
Each exporter validates the block with the policy's own config (the upstream rules) and the
object against the target system's published schema, and returns a :class:`Manifest` whose
notes list what the object cannot carry.
"""

from __future__ import annotations

from collections.abc import Callable

from tidal.export.common import ExportOptions, Manifest, ManifestError, PolicySource, load_policy_source, write_atomic
from tidal.export.hpa import export_hpa, hpa_block_from_manifest, validate_hpa
from tidal.export.keda import export_keda, keda_block_from_manifest, validate_scaled_object
from tidal.export.knative import export_knative, kpa_block_from_manifest, validate_service

#: Export target -> exporter.
EXPORTERS: dict[str, Callable[[PolicySource, ExportOptions], Manifest]] = {
    "hpa": export_hpa,
    "keda": export_keda,
    "knative": export_knative,
}


def export(target: str, source: PolicySource, options: ExportOptions | None = None) -> Manifest:
    """Export ``source`` as the ``target`` system's manifest (``hpa``, ``keda`` or ``knative``)."""
    try:
        exporter = EXPORTERS[target]
    except KeyError:
        raise ValueError(f"unknown export target {target!r}; choose one of {', '.join(EXPORTERS)}") from None
    return exporter(source, options or ExportOptions())


__all__ = [
    "EXPORTERS",
    "ExportOptions",
    "Manifest",
    "ManifestError",
    "PolicySource",
    "export",
    "export_hpa",
    "export_keda",
    "export_knative",
    "hpa_block_from_manifest",
    "keda_block_from_manifest",
    "kpa_block_from_manifest",
    "load_policy_source",
    "validate_hpa",
    "validate_scaled_object",
    "validate_service",
    "write_atomic",
]
