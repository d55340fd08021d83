"""The live world: a controller that drives real replicas with the same policy objects.

``observe → decide → act`` every sync period (DESIGN §4): metrics from tidal's balancer or
Prometheus, replicas through the balancer admin API or a Kubernetes Deployment's ``scale``
subresource; KEDA-style fallback when metrics fail, bounded retries when actuation fails,
policy state persisted so a restarted controller resumes, and a live dashboard.
"""

from tidal.live.actuators import Actuator, KubernetesActuator, LocalActuator
from tidal.live.config import ControllerConfig, controller_config_from_dict, load_controller_config
from tidal.live.controller import Controller, StepRecord, build_actuator, build_source
from tidal.live.dashboard import DashboardServer
from tidal.live.faults import ActuationError, AuthError, Backoff, FallbackRule, SourceError
from tidal.live.runner import run_controller
from tidal.live.sources import BalancerSource, MetricsSource, PrometheusSource, Scrape
from tidal.live.state import StateStore

__all__ = [
    "ActuationError",
    "Actuator",
    "AuthError",
    "Backoff",
    "BalancerSource",
    "Controller",
    "ControllerConfig",
    "DashboardServer",
    "FallbackRule",
    "KubernetesActuator",
    "LocalActuator",
    "MetricsSource",
    "PrometheusSource",
    "Scrape",
    "SourceError",
    "StateStore",
    "StepRecord",
    "build_actuator",
    "build_source",
    "controller_config_from_dict",
    "load_controller_config",
    "run_controller",
]
