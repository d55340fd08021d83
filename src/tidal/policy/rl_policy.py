"""``rl``: act greedily on a Q table learned in simulation (:func:`tidal.rl.train`).

::

    policy:
      name: rl
      model: models/q.npz      # or .json; written by QPolicy.save / QModel.save

Each decision extracts the features of the observation (:func:`tidal.rl.features.extract`, the
very function the training environment uses), looks up the discretised state's row of the table
and applies the best replica change: ``replicas + delta`` (never below 0; the scenario's or
controller's bounds clamp it further, as they do in training). The table is fixed, so the policy
is stateless and deterministic.

The model file is read once, when the policy is built; a missing or malformed file is a
:class:`~tidal.core.errors.TidalInputError` naming the path. A relative path is resolved against
the working directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.policy.registry import PolicyConfig, register
from tidal.rl.features import extract, feature_dict
from tidal.rl.qtable import QModel, load_model


class RLConfig(PolicyConfig):
    model: Path = Field(description="Q model file (.npz or .json) written by tidal.rl.train")


class QPolicy(Policy):
    """Greedy policy of a :class:`~tidal.rl.qtable.QModel`: ``replicas + argmax_a Q(state, a)``."""

    name = "rl"

    def __init__(self, model: QModel, source: str = "") -> None:
        self.model = model
        self.source = source

    @classmethod
    def from_config(cls, config: RLConfig) -> QPolicy:
        return cls(load_model(config.model), source=str(config.model))

    def decide(self, obs: Observation) -> Decision:
        features = extract(obs, self.model.features)
        state = self.model.state(features)
        delta = self.model.actions[self.model.greedy(state)]
        desired = max(0, obs.replicas + delta)
        f = feature_dict(features)
        return Decision(desired, reason=f"rl state {state} (load={f['load']:.2f}, p99/slo={f['p99']:.2f}): {delta:+d}")

    def save(self, path: str | Path) -> Path:
        """Write the model (``.npz`` or ``.json``); ``{name: rl, model: path}`` loads it back."""
        return self.model.save(path)

    def describe(self) -> str:
        return f"rl({Path(self.source).name})" if self.source else "rl"


register("rl", RLConfig, summary="greedy policy of a Q table learned in simulation (tidal.rl)")(QPolicy.from_config)
