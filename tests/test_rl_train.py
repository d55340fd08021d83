"""Q-learning in simulation: it learns to scale a step load, deterministically per seed."""

from __future__ import annotations

import numpy as np
import pytest

from test_rl_env import STEP_LOAD
from tidal.config import scenario_from_dict
from tidal.policy.rl_policy import QPolicy
from tidal.rl import QModel, TrainConfig, evaluate, load_model, train
from tidal.rl.env import ScalingEnv, scenario_features

SCENARIO = scenario_from_dict(STEP_LOAD)
#: Held-out evaluation: three episodes whose requests training never saw.
EVAL_SEED = 10_000


@pytest.fixture(scope="module")
def trained() -> QPolicy:
    return train(SCENARIO, episodes=40, seed=0)


def test_training_improves_the_return_over_the_untrained_policy(trained):
    untrained = QModel.untrained(scenario_features(SCENARIO))
    before = evaluate(untrained, SCENARIO, seed=EVAL_SEED, episodes=3)
    after = evaluate(trained, SCENARIO, seed=EVAL_SEED, episodes=3)
    # Holding 2 replicas through the step to 160 req/s (4x one replica) misses the SLO for most
    # requests for 6 minutes (about -370 per episode); a learned policy scales up. Over training
    # seeds 0-11 the learned return ranged from -30 to -51, so requiring half of the loss gone
    # leaves a wide margin.
    assert before < -200
    assert after > before / 2
    # And it learned to scale: the greedy policy ends the episode well above 2 replicas.
    env = ScalingEnv(SCENARIO)
    obs, _ = env.reset(seed=EVAL_SEED)
    done = False
    while not done:
        obs, _, _, done, info = env.step(trained.model.act(obs))
    assert info["replicas"] >= 4


def test_training_is_deterministic_per_seed():
    short = {**STEP_LOAD, "duration": "3m"}
    returns_a: list[float] = []
    a = train(short, episodes=3, seed=7, on_episode=lambda i, r: returns_a.append(r))
    b = train(short, episodes=3, seed=7)
    c = train(short, episodes=3, seed=8)
    np.testing.assert_array_equal(a.model.q, b.model.q)
    assert not np.array_equal(a.model.q, c.model.q)
    assert len(returns_a) == 3 and all(r <= 0 for r in returns_a)
    assert a.model.info["episodes"] == 3 and a.model.info["seed"] == 7


def test_trained_policy_round_trips_through_a_file(trained, tmp_path):
    path = trained.save(tmp_path / "q.npz")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.q, trained.model.q)
    assert evaluate(loaded, SCENARIO, seed=EVAL_SEED) == evaluate(trained, SCENARIO, seed=EVAL_SEED)


def test_bad_training_arguments():
    with pytest.raises(ValueError, match="episodes"):
        train(SCENARIO, episodes=0)
    with pytest.raises(ValueError, match="gamma"):
        TrainConfig(gamma=1.0)
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(alpha=0.0)
    env = ScalingEnv(SCENARIO, max_step=1)
    with pytest.raises(ValueError, match="actions"):
        evaluate(QModel.untrained(scenario_features(SCENARIO), max_step=2), env)
