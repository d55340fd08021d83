"""The ``kpa`` policy in the simulator: panic on a flash crowd, scale to zero and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tidal.policy.kpa  # noqa: F401  (registers "kpa")
from tidal.config import load_scenario, scenario_from_dict
from tidal.core.types import Decision, Observation
from tidal.policy import PolicyWrapper, build_policy
from tidal.policy.kpa import KPAPolicy
from tidal.sim import simulate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kpa_panic_spike.yaml"


class Recording(PolicyWrapper):
    """Keeps every (time, decision) of the wrapped policy."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.decisions: list[tuple[float, Decision]] = []

    def decide(self, obs: Observation) -> Decision:
        decision = self.inner.decide(obs)
        self.decisions.append((obs.time, decision))
        return decision


def kpa_of(policy) -> KPAPolicy:
    while not isinstance(policy, KPAPolicy):
        policy = policy.inner
    return policy


def run(scenario) -> tuple[Any, Recording]:
    policy = Recording(build_policy(scenario.policy, scenario.replicas.min, scenario.replicas.max))
    return simulate(scenario, policy), policy


def column(result, name: str) -> np.ndarray:
    return result.ticks.column(name).to_numpy()


def test_flash_crowd_trips_panic_mode_and_scales_up_fast():
    scenario = load_scenario(EXAMPLE)
    result, policy = run(scenario)
    kpa = kpa_of(policy)
    spike = scenario.workload.at  # 120 s; the rate reaches its peak 10 s later

    # Panic mode starts within a few ticks of the burst and is visible in the decision reasons.
    assert kpa.panic_entries >= 1
    assert spike <= kpa.first_panic_at <= spike + 12
    panic = [(t, d.replicas) for t, d in policy.decisions if d.reason.startswith("panic:")]
    assert panic and all(spike <= t for t, _ in panic)
    # While panicking the KPA never scales down within one panic episode (it may hit max_scale).
    first_episode = [r for t, r in panic if t <= kpa.first_panic_at + 60]
    assert first_episode == sorted(first_episode)

    # Scale-up is quick: 300 req/s x 0.2 s = 60 in flight needs 9 pods at 7 per pod.
    time, spec, ready = column(result, "time"), column(result, "spec"), column(result, "ready")
    assert spec[(time >= spike) & (time <= spike + 12)].max() >= 9
    assert ready[(time >= spike) & (time <= spike + 20)].max() >= 9
    # Before the burst one pod serves the 10 req/s base load; long after it, it is back to few pods.
    assert spec[time < spike].max() == 1
    assert spec[time >= 560].max() <= 2


def idle_scenario(duration: float = 240.0, workload: dict[str, Any] | None = None, **policy: Any):
    return scenario_from_dict({
        "duration": duration,
        "workload": workload or {"kind": "constant", "rate": 0},
        "service": {"service_time": {"distribution": "exponential", "mean": 0.1}, "concurrency": 4,
                    "cold_start": "2s"},
        "load_balancer": {"buffer_limit": 1000},
        "replicas": {"min": 0, "max": 10, "initial": 1},
        "control": {"sync_period": "2s", "scrape_interval": "1s"},
        "policy": {"name": "kpa", **policy},
    })


def first_time(result, mask: np.ndarray) -> float:
    times = column(result, "time")[mask]
    assert len(times), "never happened"
    return float(times[0])


def test_no_traffic_scales_to_zero_after_the_stable_window_and_grace_period():
    # target_burst_capacity 0 keeps the activator out of the path while pods serve, so the
    # whole grace period runs once the PA goes inactive (after one stable window of idleness).
    result, policy = run(idle_scenario(target_burst_capacity=0))
    spec = column(result, "spec")
    zero_at = first_time(result, spec == 0)
    assert zero_at == pytest.approx(60 + 30, abs=2.0)
    assert (spec[column(result, "time") >= zero_at] == 0).all()
    kpa = kpa_of(policy)
    assert kpa.active.status.active == "False" and kpa.sks.mode == "Proxy"
    reasons = [d.reason for t, d in policy.decisions if 60 < t < zero_at]
    assert reasons and all("grace period" in r for r in reasons)


def test_activator_already_in_the_path_skips_the_grace_period():
    # Default burst capacity (211) with one pod of capacity 100: the activator fronts the pod
    # from the start, so once the PA goes inactive the scale to zero takes the fast path.
    result, _ = run(idle_scenario())
    assert first_time(result, column(result, "spec") == 0) == pytest.approx(60 + 2, abs=2.0)


def test_scale_to_zero_grace_period_is_a_parameter():
    result, _ = run(idle_scenario(target_burst_capacity=0, scale_to_zero_grace_period="50s", window="30s"))
    assert first_time(result, column(result, "spec") == 0) == pytest.approx(30 + 50, abs=2.0)


def test_requests_at_zero_wake_the_revision_up():
    workload = {"kind": "step", "rate": 0, "to": "5/s", "at": "150s"}
    result, _ = run(idle_scenario(duration=200.0, workload=workload, target_burst_capacity=0))
    time, spec = column(result, "time"), column(result, "spec")
    assert (spec[(time >= 95) & (time < 150)] == 0).all()
    woke = first_time(result, (time >= 150) & (spec >= 1))
    assert woke <= 150 + 4
    assert result.summary.drops == 0
