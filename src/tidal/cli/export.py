"""``tidal export hpa|keda|knative POLICY.yaml``: a policy block as a Kubernetes manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

TARGETS = ("hpa", "keda", "knative")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write the Kubernetes manifest (HPA, KEDA ScaledObject, Knative Service) of a policy",
        description="Write the manifest that runs a tidal policy block in a cluster: an autoscaling/v2 "
                    "HorizontalPodAutoscaler (hpa), a KEDA ScaledObject (keda) or a Knative Service (knative). "
                    "POLICY.yaml holds a policy block or a whole scenario (then its replicas bounds apply too).")
    p.add_argument("target", choices=TARGETS, help="the manifest to write")
    p.add_argument("policy", type=Path, metavar="POLICY.yaml",
                   help="a policy block, or a scenario with a 'policy:' key")
    p.add_argument("--name", help="object name (default: from the scenario's name)")
    p.add_argument("--namespace", help="object namespace (default: none, i.e. kubectl's current one)")
    p.add_argument("--target-deployment", metavar="DEPLOY", help="Deployment to scale (hpa, keda; default: the name)")
    p.add_argument("--image", help="container image of the Knative Service (default: a placeholder)")
    p.add_argument("--prometheus-address", metavar="URL",
                   help="Prometheus server for KEDA triggers that name none (tidal-metric triggers)")
    p.add_argument("--include-cluster-config", action="store_true",
                   help="knative: also write the cluster-wide config-autoscaler ConfigMap for keys no annotation sets")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here (atomically) instead of to stdout")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from tidal.cli.main import console, err_console
    from tidal.export import ExportOptions, export, load_policy_source, write_atomic

    source = load_policy_source(args.policy)
    options = ExportOptions(
        name=args.name, namespace=args.namespace, target_deployment=args.target_deployment, image=args.image,
        prometheus_address=args.prometheus_address, include_cluster_config=args.include_cluster_config,
    )
    manifest = export(args.target, source, options)
    text = manifest.to_yaml()
    for note in manifest.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    if args.out is None:
        # Plain stdout: the YAML must stay byte-exact (no wrapping or markup).
        console.file.write(text)
        console.file.flush()
    else:
        write_atomic(args.out, text)
        err_console.print(f"wrote {escape(str(args.out))}", highlight=False)
    return 0
