"""A Gymnasium environment over the simulator: one step = one sync period of a scenario.

:class:`ScalingEnv` drives a :class:`~tidal.sim.stepper.SimulationStepper`. At each step the
agent picks a replica change ``delta`` in ``{-max_step, ..., +max_step}``; the environment
clamps ``replicas + delta`` to the scenario's ``[min, max]`` (as ``Bounded`` does for any policy in
the simulator), simulates one sync period and returns:

* **observation**: :func:`tidal.rl.features.extract` of the next :class:`~tidal.core.types.Observation`
  (float32, in ``[0, FEATURE_HIGH]``: demand, load, utilization, queue, p99/SLO, drops, ready,
  starting, spec; see :mod:`tidal.rl.features`);
* **reward**, per step, in ``[-(cost_weight + slo_weight), 0]``::

      reward = -cost_weight * cost_term - slo_weight * slo_term
      cost_term = replica-seconds billed in the step / (step length * max replicas)
      slo_term  = requests that finished in the step outside the SLO or were dropped
                  / requests that finished in the step (drops included; 0 if none)

  ``cost_term`` is the step's cost as a fraction of the largest allowed fleet's (the price per
  replica-hour cancels), ``slo_term`` the step's SLO miss rate. With the defaults (1 and 10) one
  extra replica out of ``max`` costs ``1/max`` per step while missing the SLO for 10 % of the
  requests costs 1;
* ``terminated`` is always False and ``truncated`` becomes True when the scenario's duration
  has been simulated (a time limit, so bootstrapping from the last state is right).

Seeding: ``reset(seed=s)`` seeds the environment's generator, which draws the simulation seed,
so the same ``s`` replays the same requests; ``reset()`` without a seed draws a new one. Pass
``options={"sim_seed": n}`` to simulate with exactly seed ``n`` (e.g. the scenario's own seed, to
compare with :func:`tidal.sim.simulate`), and ``options={"initial_replicas": n}`` to start the
episode with ``n`` ready replicas instead of the scenario's ``replicas.initial`` (exploring starts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tidal.config import Scenario, load_scenario, scenario_from_dict
from tidal.core.types import Observation
from tidal.policy.registry import effective_control
from tidal.rl.features import FEATURE_HIGH, FeatureSpec, extract
from tidal.sim.stepper import SimulationStepper, TickSummary

ScenarioLike = Scenario | Mapping[str, Any] | str | Path


def as_scenario(scenario: ScenarioLike) -> Scenario:
    """A :class:`Scenario` from a scenario, a mapping (parsed YAML) or a YAML file path."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, Mapping):
        return scenario_from_dict(scenario)
    return load_scenario(scenario)


#: The registry name the learnt table runs under (:mod:`tidal.policy.rl_policy`).
RL_POLICY = "rl"


def scenario_features(scenario: Scenario) -> FeatureSpec:
    """Feature normalisation for ``scenario``: its max replicas, replica capacity, SLO and sync period.

    A replica's capacity is ``concurrency / E[service time]`` requests per second (request sizes,
    if the service time depends on them, are not known here and are ignored).
    """
    svc = scenario.service
    return FeatureSpec(
        max_replicas=scenario.replicas.max,
        replica_capacity=svc.concurrency / max(svc.service_time.expected, 1e-9),
        slo_latency=scenario.slo.latency,
        concurrency=svc.concurrency,
        window=effective_control(scenario.control, RL_POLICY).sync,
    )


@dataclass(frozen=True, slots=True)
class StepReward:
    """The reward of one step and its two parts (both in ``[0, 1]``)."""

    reward: float
    cost_term: float
    slo_term: float
    cost: float
    finished: int
    slo_misses: int


def step_reward(ticks: Sequence[TickSummary], *, max_replicas: int, cost_weight: float = 1.0,
                slo_weight: float = 10.0) -> StepReward:
    """Reward of a step from its ticks (see the module docstring for the definition)."""
    seconds = sum(t.duration for t in ticks)
    billed = sum(t.replica_seconds for t in ticks)
    finished = sum(t.completions + t.drops for t in ticks)
    misses = sum(t.slo_misses for t in ticks)
    # Draining replicas are still billed, so a fleet at max that is scaling in can bill a little
    # more than max x seconds: clip so the reward keeps its documented range.
    cost_term = min(1.0, billed / (seconds * max_replicas)) if seconds > 0 else 0.0
    slo_term = misses / finished if finished else 0.0
    reward = -cost_weight * cost_term - slo_weight * slo_term
    return StepReward(reward, cost_term, slo_term, sum(t.cost for t in ticks), finished, misses)


class ScalingEnv(gym.Env):
    """Gymnasium environment: scale the replicas of ``scenario`` one sync period at a time.

    ``max_step`` bounds the replica change per step (``Discrete(2 * max_step + 1)``, action ``a``
    means ``a - max_step``); ``cost_weight`` and ``slo_weight`` weigh the reward's terms;
    ``features`` overrides the normalisation taken from the scenario.
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: ScenarioLike, *, max_step: int = 2, cost_weight: float = 1.0,
                 slo_weight: float = 10.0, features: FeatureSpec | None = None) -> None:
        super().__init__()
        if max_step < 1:
            raise ValueError(f"max_step must be >= 1, got {max_step}")
        if cost_weight < 0 or slo_weight < 0:
            raise ValueError(f"cost_weight and slo_weight must be >= 0, got {cost_weight}, {slo_weight}")
        scenario = as_scenario(scenario)
        # Train at the cadence the learnt policy will run at in this scenario (``rl`` has no
        # upstream cadence: the scenario's sync period, else 15 s), not the scenario block's.
        self.scenario = scenario.model_copy(update={"control": effective_control(scenario.control, RL_POLICY)})
        self.max_step = int(max_step)
        self.actions = tuple(range(-self.max_step, self.max_step + 1))
        self.cost_weight = float(cost_weight)
        self.slo_weight = float(slo_weight)
        self.features = features or scenario_features(self.scenario)
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(low=np.zeros_like(FEATURE_HIGH), high=FEATURE_HIGH.copy(),
                                                dtype=np.float32)
        self.stepper = SimulationStepper(self.scenario, label="rl-env")
        self.observation: Observation | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        sim_seed = options.get("sim_seed")
        if sim_seed is None:
            sim_seed = int(self.np_random.integers(0, 2**31 - 1))
        initial = options.get("initial_replicas")
        if initial is not None:
            bounds = self.scenario.replicas
            if not bounds.min <= int(initial) <= bounds.max:
                raise ValueError(f"options['initial_replicas'] must lie in [{bounds.min}, {bounds.max}], got {initial}")
            replicas = bounds.model_copy(update={"initial": int(initial)})
            self.stepper.scenario = self.scenario.model_copy(update={"replicas": replicas})
        else:
            self.stepper.scenario = self.scenario
        self.observation = self.stepper.reset(int(sim_seed))
        return extract(self.observation, self.features), {"time": self.stepper.time, "sim_seed": int(sim_seed),
                                                          "replicas": self.stepper.spec}

    def step(self, action):
        if self.observation is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        bounds = self.scenario.replicas
        delta = self.actions[int(action)]
        desired = min(max(self.stepper.spec + delta, bounds.min), bounds.max)
        ticks = self.stepper.step(desired)
        r = step_reward(ticks, max_replicas=self.features.max_replicas, cost_weight=self.cost_weight,
                        slo_weight=self.slo_weight)
        self.observation = self.stepper.observe()
        obs = extract(self.observation, self.features)
        info = {
            "time": self.stepper.time,
            "replicas": desired,
            "delta": delta,
            "cost": r.cost,
            "cost_term": r.cost_term,
            "slo_term": r.slo_term,
            "finished": r.finished,
            "slo_misses": r.slo_misses,
            "arrivals": sum(t.arrivals for t in ticks),
        }
        return obs, float(r.reward), False, self.stepper.done, info

    def render(self) -> None:
        return None
