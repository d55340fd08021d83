"""What policies observe in the simulator: pods, resource usage, metrics timing, actuation delay."""

from __future__ import annotations

import pytest

from conftest import make_scenario
from tidal.config.scenario import ResourceSpec
from tidal.core.types import Decision, Observation
from tidal.policy.base import Policy
from tidal.sim import Simulation


class Recorder(Policy):
    """Holds a fixed count and keeps every observation."""

    name = "recorder"

    def __init__(self, replicas: int, schedule: dict[float, int] | None = None) -> None:
        self.replicas = replicas
        self.schedule = schedule or {}
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        self.replicas = self.schedule.get(obs.time, self.replicas)
        return Decision(self.replicas)


def test_pods_report_cpu_usage_from_the_resource_model():
    # 2 replicas x 4 slots, 40 req/s x 0.1 s = 4 busy slots in total -> 2 busy slots per pod.
    scenario = make_scenario(rate=40.0, service=0.1, replicas=2, concurrency=4, duration=600,
                             balancer="round_robin")
    svc = scenario.service.model_copy(update={"resources": {
        "cpu": ResourceSpec(request=2.0, idle=0.1, per_busy_slot=0.5)}})
    policy = Recorder(2)
    Simulation(scenario.model_copy(update={"service": svc}), policy).run()
    late = [obs for obs in policy.seen if obs.time >= 120]
    usage = [pod.usage["cpu"] for obs in late for pod in obs.pods]
    assert sum(usage) / len(usage) == pytest.approx(0.1 + 0.5 * 2.0, rel=0.05)
    assert all(pod.requests["cpu"] == 2.0 for obs in late for pod in obs.pods)
    cpu_pct = [obs.metrics.last("cpu_utilization") for obs in late]
    assert sum(cpu_pct) / len(cpu_pct) == pytest.approx(100 * 1.1 / 2.0, rel=0.05)
    assert late[-1].metrics.last("utilization") == pytest.approx(0.5, rel=0.15)
    assert late[-1].metrics.last("rps") == pytest.approx(40.0, rel=0.2)


def test_metrics_lag_and_scrape_interval():
    scenario = make_scenario(rate=10.0, replicas=1, duration=300,
                             control={"sync_period": 10.0, "scrape_interval": 5.0, "metrics_lag": 20.0})
    policy = Recorder(1)
    Simulation(scenario, policy).run()
    for obs in policy.seen:
        times, _ = obs.metrics.series("rps")
        assert (times <= obs.time - 20.0 + 1e-9).all()
    assert [obs.time for obs in policy.seen[:3]] == [0.0, 10.0, 20.0]
    # Scrapes every 5 s; at t=290 the newest visible sample is the one taken at 270.
    last = policy.seen[-1]
    assert last.time == 290.0
    times, _ = last.metrics.series("rps", 60.0)
    assert list(times[-3:]) == [260.0, 265.0, 270.0]


def test_actuation_delay_and_cold_start_show_in_counts():
    scenario = make_scenario(rate=1.0, replicas=1, duration=300, control={"actuation_delay": 20.0})
    svc = scenario.service.model_copy(update={"cold_start": scenario.service.cold_start.model_copy(update={"mean": 30.0})})
    policy = Recorder(1, schedule={60.0: 3})
    Simulation(scenario.model_copy(update={"service": svc}), policy).run()
    by_time = {obs.time: obs for obs in policy.seen}
    # The spec changes when decided (t=60); the pool follows when actuated (t=80).
    assert by_time[75.0].replicas == 3 and by_time[75.0].starting == 0 and by_time[75.0].ready == 1
    assert by_time[90.0].replicas == 3 and by_time[90.0].starting == 2 and by_time[90.0].ready == 1
    assert by_time[120.0].ready == 3  # ready at 80 + 30
    pod_ready = [p.ready_at for p in by_time[120.0].pods]
    assert sorted(pod_ready) == pytest.approx([0.0, 110.0, 110.0])


def test_mismatched_scrape_interval_is_an_error():
    from tidal.core.errors import TidalInputError

    scenario = make_scenario(duration=60, control={"sync_period": 15.0, "scrape_interval": 10.0})
    with pytest.raises(TidalInputError, match="control.scrape_interval"):
        Simulation(scenario)


class PodReader(Recorder):
    """Reads every pod at decision time (as a pod-level policy would) and keeps what it read."""

    def __init__(self, replicas: int, schedule: dict[float, int] | None = None) -> None:
        super().__init__(replicas, schedule)
        self.read: list[list[tuple[int, bool, int, float | None, bool]]] = []

    def decide(self, obs: Observation) -> Decision:
        self.read.append(_pod_rows(obs))
        return super().decide(obs)


def _pod_rows(obs: Observation) -> list[tuple[int, bool, int, float | None, bool]]:
    return [(p.id, p.ready, p.in_flight, p.ready_at, p.draining) for p in obs.pods]


def test_pods_read_after_the_run_show_the_values_at_observation_time():
    # Pod samples are built only when read; reading them after the run must give what a policy
    # reading them at the decision saw (in-flight counts and readiness change every tick).
    scenario = make_scenario(rate=60.0, service=0.2, replicas=2, concurrency=4, duration=300,
                             balancer="least_connections")
    cold_start = scenario.service.cold_start.model_copy(update={"mean": 20.0})
    scenario = scenario.model_copy(update={"service": scenario.service.model_copy(update={"cold_start": cold_start})})
    schedule = {60.0: 5, 150.0: 3}
    reader, keeper = PodReader(2, schedule), Recorder(2, schedule)
    Simulation(scenario, reader).run()
    Simulation(scenario, keeper).run()
    later = [_pod_rows(obs) for obs in keeper.seen]
    assert later == reader.read
    assert [len(obs.pods) for obs in keeper.seen] == [len(rows) for rows in reader.read]
    in_flight = [sum(row[2] for row in rows) for rows in later]
    assert len(set(in_flight)) > 3  # the counts moved between syncs, so a late read would differ
    assert any(not row[1] and row[3] is None for rows in later for row in rows)  # starting pods seen


def test_queue_length_counts_waiting_and_buffered_requests():
    # One slot, 20 req/s of 0.1 s work: 10 req/s pile up in the replica's queue.
    scenario = make_scenario(rate=20.0, service={"distribution": "deterministic", "mean": 0.1}, replicas=1,
                             duration=120, control={"sync_period": "15s"})
    policy = Recorder(1)
    sim = Simulation(scenario, policy)
    ticks = sim.run().ticks.to_pydict()
    seen = {obs.time: obs.metrics.last("queue_length") for obs in policy.seen if obs.time > 0}
    for k, t in enumerate(ticks["time"][1:], start=1):
        # The scrape at the end of tick k-1: everything in the system but the one request running.
        assert seen[t] == ticks["in_flight"][k - 1] - 1, t
    assert seen[105.0] > 900
    # No replica at all: every request waits in the balancer's buffer, and counts.
    scenario = make_scenario(rate=5.0, replicas=0, duration=60, control={"sync_period": "15s"},
                             load_balancer={"algorithm": "round_robin", "buffer_limit": 10_000})
    policy = Recorder(0)
    ticks = Simulation(scenario, policy).run().ticks.to_pydict()
    arrived = 0
    for k, obs in enumerate(policy.seen[1:], start=1):
        arrived += ticks["arrivals"][k - 1]
        assert obs.metrics.last("queue_length") == arrived > 0
