"""KEDA (Kubernetes Event-driven Autoscaling) on tidal's policy contract.

Importing this package registers the ``keda`` policy (a ScaledObject). The modules mirror
KEDA's own split:

* :mod:`~tidal.policy.keda.config` -- ScaledObject fields and KEDA's admission checks;
* :mod:`~tidal.policy.keda.scalers` -- triggers reading tidal metrics (``tidal-metric``,
  ``prometheus``, ``cpu``, ``memory``);
* :mod:`~tidal.policy.keda.executor` -- ``RequestScale``: activation 0 <-> 1, cooldown, idle;
* :mod:`~tidal.policy.keda.fallback` -- per-metric health and fallback replicas;
* :mod:`~tidal.policy.keda.modifiers` and :mod:`~tidal.policy.keda.expr` -- scaling-modifier
  formulas, evaluated by a small safe expression evaluator;
* :mod:`~tidal.policy.keda.hpa` -- the HPA KEDA generates for 1 <-> N, run by the shared
  Kubernetes HPA (:mod:`tidal.policy.hpa`);
* :mod:`~tidal.policy.keda.scaledjob` -- ScaledJob strategies (default, custom, accurate, eager);
* :mod:`~tidal.policy.keda.policy` -- the ``keda`` policy tying them together.
"""

from tidal.policy.keda.config import KedaConfig
from tidal.policy.keda.policy import KedaPolicy

__all__ = ["KedaConfig", "KedaPolicy"]
