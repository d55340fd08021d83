"""Each policy runs at its upstream system's cadence unless the scenario sets one, and policies
at different cadences still replay identical requests (common random numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO
from tidal.config import load_scenario, scenario_from_dict
from tidal.policy import build_policy, effective_control
from tidal.sim import Simulation, simulate

BASE = {"workload": {"kind": "constant", "rate": 10}, "service": {"service_time": "50ms"}, "duration": "1h"}


KEDA_TRIGGER = {"type": "tidal-metric", "metadata": {"metric": "queue_length", "targetValue": "5"}}


@pytest.mark.parametrize("policy, sync, scrape", [
    ({"name": "hpa"}, 15, 15), ({"name": "keda", "triggers": [KEDA_TRIGGER]}, 15, 15), ({"name": "kpa"}, 2, 1),
    ({"name": "ray_serve"}, 1, 10), ({"name": "predictive"}, 15, 15)])
def test_unset_control_periods_take_the_policys_upstream_cadence(policy, sync, scrape):
    s = scenario_from_dict({**BASE, "policy": policy})
    control = effective_control(s.control, s.policy)
    assert (control.sync, control.scrape) == (sync, scrape)
    assert (Simulation(s).tick, Simulation(s).per_sync) == (min(sync, scrape), sync / min(sync, scrape))


def test_set_control_periods_win_over_the_policys_cadence():
    s = scenario_from_dict({**BASE, "policy": {"name": "kpa"}, "control": {"sync_period": "15s"}})
    control = effective_control(s.control, s.policy)
    assert (control.sync, control.scrape) == (15, 15)  # the cadence's 1 s scrape goes with its 2 s sync only
    s = scenario_from_dict({**BASE, "policy": {"name": "kpa"}, "control": {"scrape_interval": "2s"}})
    assert (effective_control(s.control, s.policy).sync, effective_control(s.control, s.policy).scrape) == (2, 2)
    # A scrape interval alone that does not fit the policy's sync period: decide at each scrape.
    for policy, sync, tick in (("kpa", 5, 5), ("hpa", 15, 5), ("ray_serve", 1, 1)):
        s = scenario_from_dict({**BASE, "policy": {"name": policy}, "control": {"scrape_interval": "5s"}})
        control = effective_control(s.control, s.policy)
        assert (control.sync, control.scrape) == (sync, 5), policy
        assert Simulation(s).tick == tick


def test_policies_at_different_cadences_see_the_same_requests():
    data = {"workload": {"kind": "bursty", "rates": ["2/s", "40/s"], "mean_durations": ["2m", "1m"]},
            "service": {"service_time": {"distribution": "exponential", "mean": "200ms"}, "concurrency": 4},
            "duration": "617s", "seed": 3, "replicas": {"min": 1, "max": 30, "initial": 2}}
    runs = {name: simulate(scenario_from_dict({**data, "policy": block}))
            for name, block in {"hpa": {"name": "hpa"}, "kpa": {"name": "kpa"},
                                "ray_serve": {"name": "ray_serve", "max_replicas": 30}}.items()}
    ticks = {name: r.ticks.to_pydict() for name, r in runs.items()}
    assert [np.diff(ticks[n]["time"][:2])[0] for n in runs] == [15, 1, 1]
    totals = {name: r.summary.arrivals for name, r in runs.items()}
    assert len(set(totals.values())) == 1 and totals["hpa"] > 1000, totals
    # Same arrivals per 15 s interval, whatever the tick.
    per_15s = {name: np.bincount((np.asarray(t["time"]) // 15).astype(int), weights=t["arrivals"])
               for name, t in ticks.items()}
    assert np.array_equal(per_15s["hpa"], per_15s["kpa"]) and np.array_equal(per_15s["kpa"], per_15s["ray_serve"])


UPSTREAM_ON_A_TRACE = {
    # HPA on CPU, KPA on concurrency, KEDA on queue length, Ray Serve on ongoing requests.
    "hpa": ({"name": "hpa", "metrics": [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}, 15.0),
    "kpa": ({"name": "kpa", "container_concurrency": 16, "container_concurrency_target_percentage": 70}, 2.0),
    "keda": ({"name": "keda", "minReplicaCount": 2, "maxReplicaCount": 80, "triggers": [
        {"type": "tidal-metric", "metadata": {"metric": "queue_length", "targetValue": "8"}}]}, 15.0),
    "ray_serve": ({"name": "ray_serve", "min_replicas": 2, "max_replicas": 80, "target_ongoing_requests": 8}, 1.0),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM_ON_A_TRACE))
def test_upstream_policies_run_on_a_shipped_trace_at_their_cadence(name):
    block, sync = UPSTREAM_ON_A_TRACE[name]
    scenario = load_scenario(REPO / "examples" / "azure_llm_conv.yaml",
                             overrides={"duration": "20m", "policy": block, "replicas.initial": 4})
    result = simulate(scenario)
    ticks = result.ticks.to_pydict()
    desired = np.asarray(ticks["desired"])
    assert result.summary.arrivals > 30_000 and result.summary.completions > 0.8 * result.summary.arrivals
    # One decision per sync period, and the starting 4 replicas cannot carry ~55 req/s: it scaled out.
    assert result.summary.decisions == int(1200 / sync)
    assert desired.max() > 4, name


def test_a_policy_object_runs_at_its_own_cadence_not_the_scenario_blocks():
    scenario = scenario_from_dict({**BASE, "policy": {"name": "hpa"}})
    kpa = build_policy({"name": "kpa"}, 0, 10)
    sim = Simulation(scenario, kpa)
    assert (sim.tick, sim.per_sync) == (1.0, 2)
    assert (Simulation(scenario).tick, Simulation(scenario).per_sync) == (15.0, 1)


def test_a_policy_class_built_directly_knows_its_registry_name():
    from tidal.policy.hpa import HPAConfig, HPAPolicy
    from tidal.policy.kpa import KPAConfig, KPAPolicy

    assert (KPAPolicy.name, HPAPolicy.name) == ("kpa", "hpa")
    scenario = scenario_from_dict({**BASE, "policy": {"name": "hpa"}})
    assert Simulation(scenario, KPAPolicy(KPAConfig())).tick == 1.0
    assert Simulation(scenario, HPAPolicy(HPAConfig())).tick == 15.0
