"""Tabular Q-learning on :class:`~tidal.rl.env.ScalingEnv`, and greedy evaluation.

``train(scenario, episodes, seed)`` runs ``episodes`` episodes of the scenario, each replaying
fresh requests (the first seeded by ``seed``, the rest drawn from the environment's generator)
and, with ``exploring_starts``, starting from a random replica count. It acts ε-greedily, with ε
falling linearly from ``epsilon_start`` to ``epsilon_end``, and updates

    Q(s, a) += α_n · (r + γ · max_a' Q(s', a') − Q(s, a)),   α_n = max(alpha, 1 / visits(s, a))

on the discretised state (:class:`~tidal.rl.features.Discretizer`): a sample average at first,
a constant step later. The table starts at zero and rewards are never positive, so unexplored
actions look best and get tried (optimistic initialisation). Episodes end by time limit, so the
last step bootstraps too. Everything is seeded: the same arguments give the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tidal.policy.rl_policy import QPolicy
from tidal.rl.env import ScalingEnv, ScenarioLike, as_scenario
from tidal.rl.features import DEFAULT_DISCRETIZER, Discretizer
from tidal.rl.qtable import QModel, greedy_action, tie_order


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` and of the environment it trains in."""

    alpha: float = 0.1
    gamma: float = 0.8
    exploring_starts: bool = True
    epsilon_start: float = 0.3
    epsilon_end: float = 0.02
    max_step: int = 2
    cost_weight: float = 1.0
    slo_weight: float = 10.0
    discretizer: Discretizer = DEFAULT_DISCRETIZER

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must lie in (0, 1], got {self.alpha}")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must lie in [0, 1), got {self.gamma}")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    def env(self, scenario: ScenarioLike) -> ScalingEnv:
        return ScalingEnv(scenario, max_step=self.max_step, cost_weight=self.cost_weight,
                          slo_weight=self.slo_weight)


def train(scenario: ScenarioLike, episodes: int, seed: int = 0, config: TrainConfig | None = None,
          on_episode: Callable[[int, float], None] | None = None) -> QPolicy:
    """Learn a Q table for ``scenario`` in ``episodes`` simulated episodes; return its greedy policy.

    ``on_episode(index, return)`` is called after each episode (progress, learning curves).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cfg = config or TrainConfig()
    scenario = as_scenario(scenario)
    env = cfg.env(scenario)
    disc = cfg.discretizer
    q = np.zeros((disc.n_states, env.action_space.n))
    visits = np.zeros(q.shape, dtype=np.int64)
    bounds = scenario.replicas
    order = np.array(tie_order(env.actions), dtype=np.int64)  # the greedy tie-break QModel uses
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        frac = episode / max(episodes - 1, 1)
        epsilon = cfg.epsilon_start + (cfg.epsilon_end - cfg.epsilon_start) * frac
        options = None
        if cfg.exploring_starts:
            # Start each episode from a random replica count, so that states the scenario's own
            # start never leads to (badly over- or under-provisioned) are visited and learned too.
            options = {"initial_replicas": int(rng.integers(bounds.min, bounds.max + 1))}
        obs, _ = env.reset(seed=seed if episode == 0 else None, options=options)
        state = disc.index(obs)
        total = 0.0
        done = False
        while not done:
            if rng.random() < epsilon:
                action = int(rng.integers(env.action_space.n))
            else:
                action = greedy_action(q[state], order)
            obs, reward, terminated, truncated, _ = env.step(action)
            nxt = disc.index(obs)
            target = reward if terminated else reward + cfg.gamma * float(q[nxt].max())
            visits[state, action] += 1
            # Sample-average step size until it falls to alpha: fast early, then tracking.
            step = max(cfg.alpha, 1.0 / visits[state, action])
            q[state, action] += step * (target - q[state, action])
            state, total, done = nxt, total + reward, terminated or truncated
        if on_episode is not None:
            on_episode(episode, total)
    info = {"scenario": scenario.name, "episodes": episodes, "seed": seed, "alpha": cfg.alpha, "gamma": cfg.gamma,
            "epsilon": [cfg.epsilon_start, cfg.epsilon_end], "exploring_starts": cfg.exploring_starts,
            "cost_weight": cfg.cost_weight, "slo_weight": cfg.slo_weight}
    return QPolicy(QModel(q, env.actions, env.features, disc, info))


def evaluate(policy: QPolicy | QModel, scenario: ScenarioLike | ScalingEnv, seed: int = 0,
             episodes: int = 1) -> float:
    """Mean return of the greedy policy over ``episodes`` episodes (first one seeded with ``seed``)."""
    model = policy.model if isinstance(policy, QPolicy) else policy
    # Score with the reward the model was trained on unless an environment is given.
    env = scenario if isinstance(scenario, ScalingEnv) else ScalingEnv(
        scenario, max_step=max(abs(a) for a in model.actions),
        cost_weight=float(model.info.get("cost_weight", 1.0)), slo_weight=float(model.info.get("slo_weight", 10.0)))
    if tuple(env.actions) != model.actions:
        raise ValueError(f"the model's actions {model.actions} differ from the environment's {env.actions}")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(model.act(obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))
