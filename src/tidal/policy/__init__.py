"""Scaling policies and behaviours. Importing this package registers the built-in policies."""

from tidal.policy import control as _control  # noqa: F401  (registers "pid", "adaptive")
from tidal.policy import hpa as _hpa  # noqa: F401  (registers "hpa")
from tidal.policy import hybrid as _hybrid  # noqa: F401  (registers "hybrid")
from tidal.policy import keda as _keda  # noqa: F401  (registers "keda")
from tidal.policy import kpa as _kpa  # noqa: F401  (registers "kpa")
from tidal.policy import mpc as _mpc  # noqa: F401  (registers "mpc")
from tidal.policy import predictive as _predictive  # noqa: F401  (registers "predictive")
from tidal.policy import queueing_policy as _queueing  # noqa: F401  (registers "queueing")
from tidal.policy import ray_serve as _ray_serve  # noqa: F401  (registers "ray_serve")
from tidal.policy import rl_policy as _rl  # noqa: F401  (registers "rl")
from tidal.policy import simple as _simple  # noqa: F401  (registers built-ins)
from tidal.policy.base import Policy, PolicyWrapper
from tidal.policy.behaviors import Bounded, Stabilized
from tidal.policy.registry import (
    Cadence,
    available_policies,
    build_policy,
    effective_control,
    policy_cadence,
    register,
    validate_policy_block,
)

__all__ = [
    "Bounded",
    "Cadence",
    "Policy",
    "PolicyWrapper",
    "Stabilized",
    "available_policies",
    "build_policy",
    "effective_control",
    "policy_cadence",
    "register",
    "validate_policy_block",
]
