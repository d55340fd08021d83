"""Knative Pod Autoscaler (KPA), faithful to knative/serving's autoscaler and KPA reconciler.

Importing this package registers the ``kpa`` policy. The pieces are usable on their own:
:mod:`~tidal.policy.kpa.buckets` (stable/panic bucket windows), :mod:`~tidal.policy.kpa.decider`
(one ``Scale(now)`` tick), :mod:`~tidal.policy.kpa.scaler` (bounds and the scale-to-zero gate),
:mod:`~tidal.policy.kpa.status` (PA status, SKS mode, activator count) and
:mod:`~tidal.policy.kpa.resources` (targets and windows from configuration).
"""

from tidal.policy.kpa.buckets import TimedFloat64Buckets, WeightedFloat64Buckets, compute_smoothing_coeff
from tidal.policy.kpa.config import KPAConfig
from tidal.policy.kpa.decider import Autoscaler, DeciderSpec, ScaleResult
from tidal.policy.kpa.policy import KPAPolicy

__all__ = [
    "Autoscaler",
    "DeciderSpec",
    "KPAConfig",
    "KPAPolicy",
    "ScaleResult",
    "TimedFloat64Buckets",
    "WeightedFloat64Buckets",
    "compute_smoothing_coeff",
]
