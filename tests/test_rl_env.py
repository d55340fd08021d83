"""The simulation stepper and the Gymnasium environment over it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gymnasium.utils.env_checker import check_env

from tidal.config import scenario_from_dict
from tidal.policy import build_policy, effective_control
from tidal.rl.env import ScalingEnv, StepReward, scenario_features, step_reward
from tidal.rl.features import FEATURE_HIGH, FEATURE_NAMES
from tidal.sim import Simulation
from tidal.sim.stepper import SimulationStepper, TickSummary

#: A small step load: 40 req/s, then 160 req/s from minute 2. One replica serves 40 req/s
#: (4 slots x 100 ms), so the load needs ~2 replicas, then ~6.
STEP_LOAD = {
    "name": "step-load",
    "seed": 1,
    "duration": "8m",
    "workload": {"kind": "step", "rate": 40, "to": 160, "at": "2m"},
    "service": {"service_time": {"distribution": "exponential", "mean": 0.1}, "concurrency": 4,
                "queue_limit": 40, "timeout": "5s", "cold_start": "2s"},
    "load_balancer": {"algorithm": "least_connections"},
    "replicas": {"min": 1, "max": 10, "initial": 2},
    "control": {"sync_period": "10s"},
    "slo": {"latency": "500ms"},
    "policy": {"name": "static", "replicas": 2},
}


def step_load(**changes):
    return scenario_from_dict({**STEP_LOAD, **changes})


# --------------------------------------------------------------------------- the stepper


@pytest.mark.parametrize("control", [
    {"sync_period": "15s"},
    {"sync_period": "10s", "scrape_interval": "5s", "metrics_lag": "10s", "actuation_delay": "7s"},
    {"sync_period": "5s", "scrape_interval": "15s"},
], ids=["plain", "lag-and-delay", "scrape-slower-than-sync"])
def test_stepper_driven_by_a_policy_reproduces_simulation_run_exactly(control):
    scenario = step_load(control=control, service={**STEP_LOAD["service"], "cold_start": "20s"},
                         policy={"name": "target_utilization", "target": 0.6, "window": 30})

    def policy():
        return build_policy(scenario.policy, scenario.replicas.min, scenario.replicas.max)

    reference = Simulation(scenario, policy()).run()
    stepper = SimulationStepper(scenario)
    decider = policy()
    obs = stepper.reset()
    steps = 0
    while not stepper.done:
        ticks = stepper.step(decider.decide(obs).replicas)
        assert all(isinstance(t, TickSummary) for t in ticks)
        obs = stepper.observe()
        steps += 1
    result = stepper.result()
    assert result.ticks.equals(reference.ticks)
    mine, theirs = result.summary.to_dict(), reference.summary.to_dict()
    mine.pop("policy"), theirs.pop("policy")
    assert mine == theirs
    assert steps == reference.summary.decisions


def test_stepper_ticks_partial_results_and_misuse():
    scenario = step_load()
    stepper = SimulationStepper(scenario, label="me")
    with pytest.raises(RuntimeError, match="reset"):
        stepper.step(2)
    obs = stepper.reset()
    assert obs.time == 0.0 and obs.replicas == 2 and obs.ready == 2
    ticks = stepper.step(3)
    assert len(ticks) == 1 and ticks[0].time == 0.0 and ticks[0].duration == 10.0
    assert ticks[0].desired == 3 and ticks[0].spec == 3
    assert ticks[0].arrivals > 0 and ticks[0].slo_misses >= 0
    assert ticks[0].cost == pytest.approx(ticks[0].replica_seconds / 3600.0)
    assert stepper.time == 10.0 and stepper.spec == 3
    partial = stepper.result()
    assert partial.summary.duration_s == 10.0 and partial.summary.policy == "me"
    with pytest.raises(ValueError, match=">= 0"):
        stepper.step(-1)
    while not stepper.done:
        stepper.step(3)
    with pytest.raises(RuntimeError, match="over"):
        stepper.step(3)
    assert stepper.result().summary.duration_s == 480.0


def test_stepper_reset_replays_the_same_requests_per_seed():
    scenario = step_load()
    stepper = SimulationStepper(scenario)

    def arrivals(seed):
        stepper.reset(seed)
        return [stepper.step(2)[0].arrivals for _ in range(5)]

    assert arrivals(7) == arrivals(7)
    assert arrivals(7) != arrivals(8)


# --------------------------------------------------------------------------- the environment


def test_env_passes_the_gymnasium_checker():
    env = ScalingEnv(step_load(duration="2m"))
    check_env(env, skip_render_check=True)
    assert env.action_space.n == 5 and env.actions == (-2, -1, 0, 1, 2)
    assert env.observation_space.shape == (len(FEATURE_NAMES),)


def test_env_is_deterministic_per_seed():
    def episode(seed, actions):
        env = ScalingEnv(step_load(duration="3m"))
        obs, info = env.reset(seed=seed)
        trace = [obs.tolist()]
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            trace.append((obs.tolist(), reward, terminated, truncated, info["replicas"]))
        return trace

    actions = [4, 3, 2, 0, 1, 2, 2, 3, 4, 4, 2, 1]
    assert episode(5, actions) == episode(5, actions)
    assert episode(5, actions) != episode(6, actions)


def test_env_episode_shape_bounds_and_observations():
    env = ScalingEnv(step_load())
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert info["replicas"] == 2
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(4)  # +2 every step
        assert env.observation_space.contains(obs)
        assert not terminated
        assert 1 <= info["replicas"] <= 10  # clamped to the scenario's bounds
        done = truncated
        steps += 1
    assert steps == 48  # 8 minutes of 10 s sync periods
    assert info["replicas"] == 10
    features = dict(zip(FEATURE_NAMES, obs, strict=True))
    assert features["spec"] == pytest.approx(1.0) and features["load"] == pytest.approx(160 / 400, rel=0.15)
    # reset() without a seed draws a new simulation seed; a given sim_seed is used as is.
    _, first = env.reset()
    _, second = env.reset()
    assert first["sim_seed"] != second["sim_seed"]
    assert env.reset(options={"sim_seed": 42})[1]["sim_seed"] == 42
    assert env.reset(options={"initial_replicas": 7})[1]["replicas"] == 7
    with pytest.raises(ValueError, match="initial_replicas"):
        env.reset(options={"initial_replicas": 11})
    with pytest.raises(ValueError, match="action"):
        env.step(5)


def test_env_rejects_bad_parameters():
    with pytest.raises(ValueError, match="max_step"):
        ScalingEnv(step_load(), max_step=0)
    with pytest.raises(ValueError, match="slo_weight"):
        ScalingEnv(step_load(), slo_weight=-1)


def test_env_accepts_a_mapping_or_a_yaml_file(tmp_path):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(STEP_LOAD))
    expected = step_load()
    # The env runs the scenario at rl's cadence, so its control periods are filled in.
    expected = expected.model_copy(update={"control": effective_control(expected.control, "rl")})
    assert ScalingEnv(path).scenario == ScalingEnv(STEP_LOAD).scenario == expected


def test_scenario_features_come_from_the_scenario():
    spec = scenario_features(step_load())
    assert spec.max_replicas == 10
    assert spec.replica_capacity == pytest.approx(40.0)
    assert spec.slo_latency == 0.5 and spec.concurrency == 4 and spec.window == 10.0
    assert FEATURE_HIGH.dtype == np.float32


# --------------------------------------------------------------------------- the reward


def _tick(**kw):
    base = dict(time=0.0, duration=10.0, desired=2, spec=2, ready=2, starting=0, draining=0, arrivals=100,
                completions=100, drops=0, slo_ok=100, in_flight=0, utilization=0.5, replica_seconds=20.0,
                cost=20.0 / 3600, latency_p50=0.1, latency_p95=0.2, latency_p99=0.3)
    return TickSummary(**{**base, **kw})


def test_step_reward_definition():
    # 2 of 10 replicas for the whole step, every request within the SLO: -0.2.
    r = step_reward([_tick()], max_replicas=10)
    assert isinstance(r, StepReward)
    assert r.reward == pytest.approx(-0.2) and r.cost_term == pytest.approx(0.2) and r.slo_term == 0.0
    # 10 late, 10 dropped of 110 finished: slo_term = 20/110, weighted by 10.
    r = step_reward([_tick(completions=100, slo_ok=90, drops=10)], max_replicas=10, slo_weight=10.0)
    assert r.slo_term == pytest.approx(20 / 110) and r.slo_misses == 20 and r.finished == 110
    assert r.reward == pytest.approx(-0.2 - 10 * 20 / 110)
    # Ticks of a step add up; nothing finished means no SLO term; billing is capped at the full fleet.
    r = step_reward([_tick(duration=5.0, replica_seconds=10.0), _tick(duration=5.0, replica_seconds=60.0)],
                    max_replicas=10, cost_weight=2.0)
    assert r.cost_term == pytest.approx(70 / 100) and r.reward == pytest.approx(-1.4)
    assert step_reward([_tick(completions=0, slo_ok=0, replica_seconds=500.0)], max_replicas=10).reward == -1.0


def test_reward_sign_and_scale_in_simulation():
    """Rewards are never positive and never below -(cost_weight + slo_weight); the full fleet costs
    -cost_weight per step, overload costs about -slo_weight."""

    def rewards(initial, action):
        env = ScalingEnv(step_load(replicas={"min": 1, "max": 10, "initial": initial}))
        env.reset(seed=3)
        out, done = [], False
        while not done:
            _, reward, _, done, info = env.step(action)
            out.append((reward, info))
        return out

    hold_max = rewards(10, 2)  # 10 of 10 replicas all the time, no misses to speak of
    hold_one = rewards(1, 2)  # 1 replica: the step to 160 req/s overloads it 4x
    for reward, _ in hold_max + hold_one:
        assert -11.0 <= reward <= 0.0
    assert all(info["cost_term"] == pytest.approx(1.0) for _, info in hold_max)
    # No queueing with 10 idle replicas: only the service time itself misses the 500 ms SLO,
    # P(Exp(100 ms) > 500 ms) = e^-5, weighted by 10.
    assert np.mean([r for r, _ in hold_max]) == pytest.approx(-1.0 - 10 * math.exp(-5), abs=0.02)
    overloaded = [r for r, info in hold_one if info["time"] > 180]
    assert np.mean(overloaded) < -8.0  # nearly every request misses or is dropped
    assert sum(r for r, _ in hold_max) > sum(r for r, _ in hold_one)
    assert math.isclose(sum(info["cost"] for _, info in hold_max), 10 * 480 / 3600)


def test_trains_at_the_cadence_the_rl_policy_runs_at():
    """A scenario whose own block is kpa (2 s cadence) trains the table at rl's cadence (15 s)."""
    from conftest import REPO
    from tidal.config import load_scenario

    scenario = load_scenario(REPO / "examples" / "kpa_panic_spike.yaml")
    assert effective_control(scenario.control, scenario.policy).sync == 2.0
    env = ScalingEnv(scenario)
    env.reset(seed=0)
    assert env.features.window == env.stepper.sync_period == effective_control(scenario.control, "rl").sync == 15.0
