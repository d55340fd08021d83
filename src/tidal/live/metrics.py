"""The controller's own Prometheus metrics, in a registry of its own (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ControllerMetrics"]


class ControllerMetrics:
    """Counters and gauges of one controller.

    * ``tidal_controller_decisions_total{mode}`` — decisions by mode (policy, hold, fallback);
    * ``tidal_controller_desired_replicas`` — the last decided count (after bounds);
    * ``tidal_controller_source_errors_total`` — failed scrapes;
    * ``tidal_controller_actuation_errors_total`` — failed actuation attempts (each retry counts);
    * ``tidal_controller_decision_seconds`` — wall time of one observe → decide → act step.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter("tidal_controller_decisions", "Decisions taken, by mode (policy, hold, fallback).",
                                 ["mode"], registry=self.registry)
        self.desired = Gauge("tidal_controller_desired_replicas", "Replica count last decided (after bounds).",
                             registry=self.registry)
        self.source_errors = Counter("tidal_controller_source_errors", "Metric scrapes that failed.",
                                     registry=self.registry)
        self.actuation_errors = Counter("tidal_controller_actuation_errors",
                                        "Actuation attempts that failed (each retry counts).", registry=self.registry)
        self.decision_seconds = Histogram(
            "tidal_controller_decision_seconds", "Wall time of one observe-decide-act step.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry)
        for mode in ("policy", "hold", "fallback"):
            self.decisions.labels(mode=mode)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
