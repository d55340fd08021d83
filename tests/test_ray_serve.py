"""The ``ray_serve`` policy: AutoscalingConfig defaults and checks, the documented scaling-factor
arithmetic, delays counted in decision periods, cold start from zero, and runs in the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tidal.policy.ray_serve  # noqa: F401  (registers "ray_serve")
from tidal.config import load_scenario, scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.core.types import MetricsHistory, Observation, PodSample
from tidal.policy import build_policy
from tidal.policy.ray_serve import RayServeConfig, RayServePolicy, apply_scaling_factors, core_desired
from tidal.policy.registry import available_policies
from tidal.sim import simulate

REPO = Path(__file__).resolve().parents[1]


def ray(**config) -> RayServePolicy:
    policy = build_policy({"name": "ray_serve", **config})
    assert isinstance(policy, RayServePolicy)
    return policy


class World:
    """Feeds observations every ``period`` seconds; ``ongoing`` is the concurrency metric."""

    def __init__(self, policy: RayServePolicy, replicas: int, ready: int | None = None, period: float = 10.0) -> None:
        self.policy = policy
        self.replicas = replicas
        self.ready = replicas if ready is None else ready
        self.period = period
        self.t = 0.0
        self.history = MetricsHistory()

    def step(self, ongoing: float | None, follow: bool = True) -> int:
        if ongoing is not None:
            self.history.record(self.t, {"concurrency": ongoing})
        obs = Observation(time=self.t, replicas=self.replicas, ready=self.ready, starting=self.replicas - self.ready,
                          pods=(), metrics=self.history.view(self.t))
        decision = self.policy.decide(obs)
        self.t += self.period
        if follow:
            self.replicas = self.ready = decision.replicas
        else:
            self.replicas = decision.replicas
        return decision.replicas


# --------------------------------------------------------------------------- config


def test_registered_with_autoscaling_config_defaults():
    assert "ray_serve" in available_policies()
    cfg = ray().config
    assert (cfg.min_replicas, cfg.max_replicas, cfg.initial_replicas) == (1, 1, None)
    assert cfg.target_ongoing_requests == 2.0
    assert (cfg.metrics_interval_s, cfg.look_back_period_s) == (10.0, 30.0)
    assert (cfg.upscale_delay_s, cfg.downscale_delay_s, cfg.downscale_to_zero_delay_s) == (30.0, 600.0, None)
    assert (cfg.smoothing_factor, cfg.upscaling_factor, cfg.downscaling_factor) == (1.0, None, None)
    assert cfg.aggregation_function == "mean"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "max_replicas (2) must be greater than or equal to min_replicas (5)!"),
        ({"min_replicas": 2, "max_replicas": 5, "initial_replicas": 1},
         "min_replicas (2) must be less than or equal to initial_replicas (1)!"),
        ({"max_replicas": 5, "initial_replicas": 6},
         "max_replicas (5) must be greater than or equal to initial_replicas (6)!"),
        ({"target_ongoing_requests": 0}, "policy.target_ongoing_requests"),
        ({"max_replicas": 0}, "policy.max_replicas"),
        ({"min_replicas": -1}, "policy.min_replicas"),
        ({"upscaling_factor": 0}, "policy.upscaling_factor"),
        ({"upscale_delay_s": -1}, "policy.upscale_delay_s"),
        ({"aggregation_function": "median"}, "policy.aggregation_function"),
        ({"target_num_replicas": 3}, "policy.target_num_replicas"),
    ],
)
def test_bad_parameters_name_the_field(config, message):
    with pytest.raises(TidalInputError) as err:
        build_policy({"name": "ray_serve", **config})
    assert message in str(err.value)


def test_scaling_factor_precedence():
    assert RayServeConfig(smoothing_factor=0.5).get_upscaling_factor() == 0.5
    assert RayServeConfig(smoothing_factor=0.5, upscale_smoothing_factor=0.7).get_upscaling_factor() == 0.7
    cfg = RayServeConfig(smoothing_factor=0.5, upscale_smoothing_factor=0.7, upscaling_factor=2.0,
                         downscale_smoothing_factor=0.3)
    assert (cfg.get_upscaling_factor(), cfg.get_downscaling_factor()) == (2.0, 0.3)


# --------------------------------------------------------------------------- the arithmetic


@pytest.mark.parametrize(
    ("current", "total", "factors", "expected"),
    [
        (4, 20, {}, 10),                                    # raw 10
        (4, 20, {"upscaling_factor": 0.5}, 7),              # ceil(4 + 0.5 * 6)
        (10, 5, {}, 3),                                     # raw 2.5
        (10, 5, {"downscaling_factor": 0.1}, 9),            # ceil(9.25) = 10 = C: stuck rule -> 9
        (4, 8.4, {}, 5),                                    # raw 4.2
        (4, 7.8, {}, 4),                                    # raw 3.9: ceil is not < 4, no change
    ],
)
def test_documented_worked_examples(current, total, factors, expected):
    cfg = RayServeConfig(target_ongoing_requests=2, max_replicas=100, **factors)
    raw = core_desired(current, current, total, cfg)
    assert apply_scaling_factors(raw, current, cfg) == expected
    policy = ray(target_ongoing_requests=2, max_replicas=100, upscale_delay_s=0, downscale_delay_s=0, **factors)
    assert World(policy, current).step(total) == expected


def test_ongoing_requests_are_aggregated_over_the_look_back_window():
    policy = ray(target_ongoing_requests=1, max_replicas=100, look_back_period_s=30, upscale_delay_s=0)
    world = World(policy, 1)
    for value in (4, 4, 4, 10):
        world.history.record(world.t, {"concurrency": value})
        world.t += 10
    world.t -= 10
    # Samples at t=10, 20, 30 fall in (0, 30]: mean 6.
    obs = Observation(time=30, replicas=1, ready=1, starting=0, pods=(), metrics=world.history.view(30))
    assert policy.total_num_requests(obs) == pytest.approx(6.0)
    assert ray(aggregation_function="max").total_num_requests(obs) == 10.0
    empty = Observation(time=0, replicas=2, ready=2, starting=0, metrics=MetricsHistory().view(0),
                        pods=[PodSample(id=i, ready=True, started_at=0, ready_at=0, in_flight=3) for i in range(2)])
    assert policy.total_num_requests(empty) == 6.0         # no scrape yet: the replicas' in-flight


# --------------------------------------------------------------------------- delays in decision periods


def test_upscale_delay_counts_consecutive_decisions():
    world = World(ray(max_replicas=100, upscale_delay_s=30, look_back_period_s=5), 2)
    # Every 10 s: 20 ongoing requests want 10 replicas; the first vote is at t=0.
    assert [world.step(20) for _ in range(3)] == [2, 2, 2]   # t = 0, 10, 20: held
    assert world.step(20) == 10                              # t = 30: 30 s after the first vote


def test_a_change_of_direction_restarts_the_delay():
    world = World(ray(max_replicas=100, upscale_delay_s=30, downscale_delay_s=30, look_back_period_s=5), 4)
    world.step(20)
    world.step(20)
    world.step(4)                                            # down-vote: the up count resets
    world.step(8)                                            # equal: everything resets
    assert [world.step(20) for _ in range(4)] == [4, 4, 4, 10]


def test_downscale_delay_and_floor_at_one():
    world = World(ray(min_replicas=0, max_replicas=100, downscale_delay_s=60, look_back_period_s=5), 5)
    assert [world.step(0.5) for _ in range(6)] == [5] * 6    # t = 0..50: held
    assert world.step(0.5) == 1                              # t = 60: only 1 -> 0 may reach zero


def test_scale_to_zero_uses_downscale_to_zero_delay():
    policy = ray(min_replicas=0, max_replicas=10, downscale_delay_s=600, downscale_to_zero_delay_s=20,
                 look_back_period_s=5)
    world = World(policy, 1)
    assert [world.step(0) for _ in range(2)] == [1, 1]
    assert world.step(0) == 0


def test_delay_state_round_trips():
    a = World(ray(max_replicas=100, look_back_period_s=5), 2)
    a.step(20)
    a.step(20)
    state = json.loads(json.dumps(a.policy.state_dict()))
    b = World(ray(max_replicas=100, look_back_period_s=5), 2)
    b.t, b.history = a.t, a.history
    b.policy.load_state_dict(state)
    assert [b.step(20) for _ in range(2)] == [a.step(20) for _ in range(2)] == [2, 10]


# --------------------------------------------------------------------------- cold start and bounds


def test_cold_start_from_zero_bypasses_the_delays():
    world = World(ray(min_replicas=0, max_replicas=10, upscale_delay_s=300, look_back_period_s=5), 0)
    assert world.step(0) == 0                                # nothing waiting: stay at zero
    assert world.step(3, follow=False) == 1                  # requests waiting: one replica at once
    assert world.step(30, follow=False) == 1                 # still cold-starting (no ready replica): hold


def test_cold_start_uses_the_upscaling_factor():
    world = World(ray(min_replicas=0, max_replicas=10, upscaling_factor=2.5, look_back_period_s=5), 0)
    assert world.step(1) == 3                                # max(ceil(1 * 2.5), 0)


def test_bounds_and_initial_replicas():
    world = World(ray(min_replicas=2, max_replicas=6, initial_replicas=4, upscale_delay_s=0,
                      look_back_period_s=5), 1)
    assert world.step(100) == 4                              # the deployment starts at initial_replicas
    assert world.step(100) == 6                              # then clipped to max_replicas
    low = World(ray(min_replicas=2, max_replicas=6, look_back_period_s=5), 0)
    assert low.step(0) == 2                                  # below min: min_replicas


# --------------------------------------------------------------------------- in the simulator


def test_simulated_cold_start_and_scale_down_to_zero():
    scenario = scenario_from_dict({
        "seed": 1, "duration": 1200,
        "workload": {"kind": "step", "rate": "20/s", "to": "0/s", "at": 300},
        "service": {"service_time": {"distribution": "exponential", "mean": 0.1}, "concurrency": 4,
                    "cold_start": 5},
        "load_balancer": {"buffer_limit": 10000},
        "replicas": {"min": 0, "max": 20, "initial": 0},
        "control": {"sync_period": 5},
        "policy": {"name": "ray_serve", "min_replicas": 0, "max_replicas": 20, "target_ongoing_requests": 1,
                   "look_back_period_s": 10, "upscale_delay_s": 10, "downscale_delay_s": 60,
                   "downscale_to_zero_delay_s": 120},
    })
    result = simulate(scenario)
    ticks = result.ticks.to_pydict()
    time, spec = np.asarray(ticks["time"]), np.asarray(ticks["spec"])
    assert spec[time == 5][0] >= 1                           # cold start on the first requests
    busy = spec[(time > 60) & (time < 300)]
    assert busy.min() >= 2                                   # ~2 requests ongoing per 20 req/s x 0.1 s
    assert spec[-1] == 0                                     # scaled to zero after the traffic stopped
    first_zero = time[(time > 300) & (spec == 0)][0]
    # Down-votes start once the look-back window empties (~310 s): N -> 1 after downscale_delay_s,
    # then 1 -> 0 after downscale_to_zero_delay_s.
    assert first_zero >= 300 + 60 + 120
    assert result.summary.drops == 0


def test_llm_example_runs():
    scenario = load_scenario(REPO / "examples" / "ray_serve_llm.yaml")
    assert scenario.policy["name"] == "ray_serve"
    short = scenario.model_copy(update={"duration": 900.0})
    result = simulate(short)
    assert result.summary.completions > 0
    assert result.summary.max_replicas > scenario.replicas.initial_count   # it scaled up under load
