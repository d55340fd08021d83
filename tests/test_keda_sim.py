"""The KEDA example through the simulator: scale to zero after the cooldown, back on activation,
and every request buffered at zero replicas is served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tidal.policy.keda  # noqa: F401  (registers "keda" before the scenario's policy is built)
from tidal.config import load_scenario
from tidal.policy import effective_control
from tidal.sim import simulate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "keda_scale_to_zero.yaml"


@pytest.fixture(scope="module")
def run():
    scenario = load_scenario(EXAMPLE)
    result = simulate(scenario)
    return scenario, result, result.ticks.to_pydict()


def test_example_is_a_keda_scale_to_zero_scenario(run):
    scenario, _, _ = run
    assert scenario.policy["name"] == "keda"
    assert scenario.replicas.min == 0 and scenario.replicas.initial == 0
    assert scenario.policy["pollingInterval"] == "30s" and scenario.control.sync_period is None
    control = effective_control(scenario.control, scenario.policy)
    assert (control.sync, control.scrape) == (15, 15)  # the HPA's upstream sync period


def test_scales_to_zero_only_after_the_cooldown(run):
    scenario, _, ticks = run
    cooldown = 300.0
    time = np.asarray(ticks["time"])
    spec = np.asarray(ticks["spec"])
    arrivals = np.asarray(ticks["arrivals"])
    drops_to_zero = [i for i in range(1, len(spec)) if spec[i - 1] > 0 and spec[i] == 0]
    assert len(drops_to_zero) >= 2
    for i in drops_to_zero:
        quiet = (time >= time[i] - cooldown) & (time < time[i])
        # Activity is seen only at polls, so the last request came at least a cooldown earlier.
        assert arrivals[quiet].sum() == 0, time[i]


def test_comes_back_from_zero_on_activation(run):
    scenario, _, ticks = run
    time = np.asarray(ticks["time"])
    spec = np.asarray(ticks["spec"])
    arrivals = np.asarray(ticks["arrivals"])
    polling = 30.0
    comebacks = 0
    for i in range(1, len(spec)):
        if spec[i - 1] == 0 and arrivals[i - 1] > 0 and time[i - 1] + 2 * polling <= time[-1]:
            # A request waits at zero replicas: the next polls must activate within a poll
            # interval plus the scrape that makes the queue visible.
            later = np.flatnonzero((time > time[i - 1]) & (time <= time[i - 1] + 2 * polling + 1e-9))
            assert (spec[later] >= 1).any(), time[i - 1]
        if spec[i - 1] == 0 and spec[i] == 1:
            comebacks += 1
    assert comebacks >= 3
    assert spec.max() > 1  # the HPA took over between 1 and N


def test_buffered_requests_are_served(run):
    _, result, ticks = run
    summary = result.summary
    assert summary.drops == 0
    assert summary.completions + summary.in_flight_at_end == summary.arrivals
    time = np.asarray(ticks["time"])
    spec = np.asarray(ticks["spec"])
    in_flight = np.asarray(ticks["in_flight"])
    # Requests were buffered while at zero replicas, and the buffer emptied after activation.
    buffered = np.flatnonzero((spec == 0) & (in_flight > 0))
    assert len(buffered) > 0
    first = buffered[0]
    assert (in_flight[first:first + 10] == 0).any(), time[first]
