"""Reinforcement learning for scaling: a Gymnasium environment over the simulator and Q-learning.

* :class:`~tidal.rl.env.ScalingEnv` — one step is one sync period of a scenario;
* :func:`~tidal.rl.qlearning.train` — tabular Q-learning, returning a :class:`QPolicy`;
* :class:`~tidal.rl.qtable.QModel` / :func:`~tidal.rl.qtable.load_model` — the table and its
  ``.npz`` / ``.json`` files; the ``rl`` policy (:mod:`tidal.policy.rl_policy`) acts on it;
* :mod:`tidal.rl.features` — the observation features, shared by the environment and the policy.

Names are imported lazily: the ``rl`` policy imports :mod:`tidal.rl.features` while
:mod:`tidal.policy` is being imported, and the environment (which needs the simulator, which
needs :mod:`tidal.policy`) must not load then. Gymnasium is needed only for the environment.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ScalingEnv": "tidal.rl.env",
    "StepReward": "tidal.rl.env",
    "scenario_features": "tidal.rl.env",
    "step_reward": "tidal.rl.env",
    "TrainConfig": "tidal.rl.qlearning",
    "train": "tidal.rl.qlearning",
    "evaluate": "tidal.rl.qlearning",
    "QModel": "tidal.rl.qtable",
    "load_model": "tidal.rl.qtable",
    "FeatureSpec": "tidal.rl.features",
    "Discretizer": "tidal.rl.features",
    "DEFAULT_DISCRETIZER": "tidal.rl.features",
    "extract": "tidal.rl.features",
    "QPolicy": "tidal.policy.rl_policy",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidal.rl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
