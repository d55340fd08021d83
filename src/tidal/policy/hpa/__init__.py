"""A faithful Kubernetes HorizontalPodAutoscaler (autoscaling/v2) on tidal's policy contract.

Importing this package registers the ``hpa`` policy. Layers, bottom up:

* :mod:`.numeric`, :mod:`.quantity` - Go integer semantics, tolerances, resource quantities;
* :mod:`.pods`, :mod:`.metrics` - pod classification, requests, metric samples;
* :mod:`.calculator` - the per-metric replica calculator (``replica_calculator.go``);
* :mod:`.behavior`, :mod:`.history`, :mod:`.normalize` - behavior API, recommendation and event
  history, stabilization and rate limits (``horizontal.go``);
* :mod:`.spec`, :mod:`.controller` - the HPA object and one reconcile;
* :mod:`.config`, :mod:`.adapter`, :mod:`.policy` - manifest-style config, Observation mapping,
  and the registered policy.
"""

from tidal.policy.hpa.calculator import CalculatorSettings, ReplicaProposal
from tidal.policy.hpa.config import HPAConfig
from tidal.policy.hpa.controller import HPAController, MetricsSource, ReconcileResult
from tidal.policy.hpa.errors import MetricError
from tidal.policy.hpa.history import HPAState
from tidal.policy.hpa.numeric import Tolerances
from tidal.policy.hpa.policy import HPAPolicy
from tidal.policy.hpa.spec import ControllerSettings, HPASpec, MetricSpec, MetricTarget

__all__ = [
    "CalculatorSettings",
    "ControllerSettings",
    "HPAConfig",
    "HPAController",
    "HPAPolicy",
    "HPASpec",
    "HPAState",
    "MetricError",
    "MetricSpec",
    "MetricTarget",
    "MetricsSource",
    "ReconcileResult",
    "ReplicaProposal",
    "Tolerances",
]
