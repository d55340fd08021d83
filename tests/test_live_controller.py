"""The control loop with a scripted source and a recording actuator: no network, no sleeping."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest

from tidal.core.types import Decision, Observation, PodSample
from tidal.live import Backoff, Controller, FallbackRule
from tidal.live.faults import on_source_failure
from tidal.live.testing import RecordingActuator, ScriptedSource
from tidal.policy import build_policy
from tidal.policy.base import Policy


class Fixed(Policy):
    """Asks for ``replicas`` and remembers every observation it saw."""

    name = "fixed"

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        self.seen.append(obs)
        return Decision(self.replicas, reason=f"fixed {self.replicas}")


class Broken(Policy):
    name = "broken"

    def decide(self, obs: Observation) -> Decision:
        raise ZeroDivisionError("policy bug")


class Sleeps:
    """An injected ``sleep`` that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(policy: Policy, source=None, actuator=None, **kwargs) -> tuple[Controller, ScriptedSource, RecordingActuator, Sleeps]:
    source = source or ScriptedSource({"utilization": 0.5, "ready_replicas": 2}, replicas=2)
    actuator = actuator or RecordingActuator(replicas=2)
    sleeps = Sleeps()
    kwargs.setdefault("min_replicas", 1)
    kwargs.setdefault("max_replicas", 10)
    kwargs.setdefault("sync_period", 1.0)
    controller = Controller(policy, source, actuator, sleep=sleeps, **kwargs)
    return controller, source, actuator, sleeps


def step(controller: Controller, now: float):
    return asyncio.run(controller.step(now))


def steps(controller: Controller, times: list[float]):
    async def go():
        return [await controller.step(t) for t in times]

    return asyncio.run(go())


def pods(ready: int, starting: int = 0, draining: int = 0) -> tuple[PodSample, ...]:
    out = [PodSample(id=i, ready=True, started_at=0.0, ready_at=1.0, in_flight=1) for i in range(ready)]
    out += [PodSample(id=100 + i, ready=False, started_at=5.0, ready_at=None, in_flight=0) for i in range(starting)]
    out += [PodSample(id=200 + i, ready=False, started_at=0.0, ready_at=1.0, in_flight=2, draining=True)
            for i in range(draining)]
    return tuple(out)


# --------------------------------------------------------------------------- deciding


def test_policy_decision_is_actuated_and_logged_as_one_json_line(caplog):
    policy = build_policy({"name": "target_utilization", "target": 0.5, "window": 0}, 1, 10)
    source = ScriptedSource({"utilization": 0.9, "ready_replicas": 2}, pods=pods(2), replicas=2)
    controller, _, actuator, _ = make(policy, source)
    with caplog.at_level(logging.INFO, logger="tidal.live.decisions"):
        record = step(controller, 1000.0)
    assert (record.mode, record.current, record.proposed, record.desired, record.actuated) == ("policy", 2, 4, 4, True)
    assert actuator.calls == [4] and controller.spec == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "tidal.live.decisions"]
    assert len(lines) == 1
    logged = json.loads(lines[0])
    assert logged["event"] == "decision" and logged["desired"] == 4 and logged["mode"] == "policy"
    assert "utilization=0.9" in logged["reason"]
    assert logged["metrics"]["utilization"] == 0.9


def test_observation_carries_clock_spec_pods_and_metric_history():
    policy = Fixed(3)
    source = ScriptedSource({"rps": 10.0, "concurrency": 4.0}, pods=pods(2, starting=1, draining=1), replicas=3)
    controller, *_ = make(policy, source, RecordingActuator(replicas=3))
    source.metrics["rps"] = 10.0
    step(controller, 100.0)
    source.metrics["rps"] = 20.0
    step(controller, 101.0)
    obs = policy.seen[-1]
    assert obs.time == 101.0 and obs.replicas == 3
    assert (obs.ready, obs.starting, obs.draining) == (2, 1, 1)
    times, values = obs.metrics.series("rps", 10.0)
    assert list(times) == [100.0, 101.0] and list(values) == [10.0, 20.0]
    assert obs.metrics.mean("rps", 10.0) == 15.0


def test_without_reported_count_the_actuator_is_read_and_ready_comes_from_the_metric():
    policy = Fixed(5)
    source = ScriptedSource({"ready_replicas": 3.0})  # a Prometheus-like source: no pods, no count
    controller, _, actuator, _ = make(policy, source, RecordingActuator(replicas=4))
    step(controller, 10.0)
    obs = policy.seen[0]
    assert (obs.replicas, obs.ready, obs.starting, list(obs.pods)) == (4, 3, 1, [])
    assert actuator.calls == [5]


def test_no_actuation_when_the_count_is_already_right():
    controller, _, actuator, _ = make(Fixed(2))
    record = step(controller, 1.0)
    assert record.desired == 2 and not record.actuated and actuator.calls == []


def test_bounds_are_enforced_on_policy_and_fallback_counts():
    controller, source, actuator, _ = make(Fixed(50), min_replicas=1, max_replicas=8,
                                           fallback=FallbackRule(failure_threshold=0, replicas=20))
    record = step(controller, 1.0)
    assert (record.proposed, record.desired) == (50, 8) and "clamped to 8" in record.reason
    controller.policy = Fixed(0)
    assert step(controller, 2.0).desired == 1
    source.fail = True
    record = step(controller, 3.0)
    assert (record.mode, record.proposed, record.desired) == ("fallback", 20, 8)
    assert actuator.calls == [8, 1, 8]
    assert all(1 <= n <= 8 for n in actuator.calls)


def test_a_failing_policy_holds_the_count():
    controller, _, actuator, _ = make(Broken())
    record = step(controller, 1.0)
    assert (record.mode, record.desired, record.actuated) == ("hold", 2, False)
    assert "policy error" in record.reason and "policy bug" in record.reason
    assert actuator.calls == []


# --------------------------------------------------------------------------- metric source failures


def test_source_failures_hold_until_the_threshold_is_exceeded_then_fall_back():
    # KEDA: fallback when failures > failureThreshold, so threshold 3 falls back on the 4th failure.
    controller, source, actuator, _ = make(Fixed(2), fallback=FallbackRule(failure_threshold=3, replicas=6))
    source.fail = True
    records = steps(controller, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert [r.mode for r in records] == ["hold", "hold", "hold", "fallback", "fallback"]
    assert [r.source_failures for r in records] == [1, 2, 3, 4, 5]
    assert [r.desired for r in records] == [2, 2, 2, 6, 6]
    assert actuator.calls == [6], "holding never actuates; the fallback count is set once"
    assert "failure_threshold 3" in records[3].reason
    # One success resets the count: the policy decides again, and a new failure holds again.
    source.fail = False
    source.replicas = 6
    record = step(controller, 6.0)
    assert (record.mode, record.source_failures, record.desired) == ("policy", 0, 2)
    source.fail = True
    record = step(controller, 7.0)
    assert (record.mode, record.source_failures) == ("hold", 1)
    assert controller.metrics.source_errors._value.get() == 6


def test_fallback_hold_never_moves_the_count():
    controller, source, actuator, _ = make(Fixed(9), fallback=FallbackRule(failure_threshold=1, replicas=None))
    source.fail = True
    records = steps(controller, [float(t) for t in range(10)])
    assert {r.mode for r in records} == {"hold"} and {r.desired for r in records} == {2}
    assert actuator.calls == []


def test_hold_with_an_unknown_count_does_nothing():
    controller, source, actuator, _ = make(Fixed(3), actuator=RecordingActuator(readable=False))
    source.fail = True
    record = step(controller, 1.0)
    assert (record.mode, record.current, record.desired, record.actuated) == ("hold", None, None, False)
    assert actuator.calls == []


def test_without_a_count_reading_the_last_actuated_count_is_held():
    controller, source, actuator, _ = make(Fixed(4), source=ScriptedSource({"rps": 1.0}),
                                           actuator=RecordingActuator(replicas=2))
    step(controller, 1.0)
    assert controller.spec == 4
    actuator.readable = False
    source.fail = True
    record = step(controller, 2.0)
    assert (record.mode, record.current, record.desired) == ("hold", 4, 4)


@pytest.mark.parametrize(
    ("behavior", "current", "expected"),
    [("static", 2, 5), ("currentReplicas", 2, 2), ("currentReplicasIfHigher", 2, 5), ("currentReplicasIfHigher", 7, 7),
     ("currentReplicasIfLower", 2, 2), ("currentReplicasIfLower", 7, 5), ("currentReplicas", None, None)],
)
def test_fallback_behaviors_follow_keda(behavior, current, expected):
    rule = FallbackRule(failure_threshold=0, replicas=5, behavior=behavior)
    assert on_source_failure(rule, 1, current, "down").replicas == expected
    assert on_source_failure(rule, 0, current, "down").mode == "hold"


# --------------------------------------------------------------------------- actuation failures


def test_actuation_is_retried_with_exponential_backoff():
    controller, _, actuator, sleeps = make(Fixed(5), actuator=RecordingActuator(replicas=2, fail_next=2),
                                           retry_backoff=Backoff(attempts=4, base=0.5, factor=2.0, cap=5.0))
    record = step(controller, 1.0)
    assert record.actuated and record.error is None
    assert actuator.calls == [5, 5, 5] and sleeps.waits == [0.5, 1.0]
    assert controller.metrics.actuation_errors._value.get() == 2


def test_exhausted_retries_leave_the_spec_and_the_next_step_tries_again():
    controller, source, actuator, sleeps = make(Fixed(5), source=ScriptedSource({"rps": 1.0}),
                                                actuator=RecordingActuator(replicas=2, fail_next=3, readable=False),
                                                retry_backoff=Backoff(attempts=3, base=1.0, cap=1.5))
    controller.spec = 2
    record = step(controller, 1.0)
    assert not record.actuated and "scripted actuation failure" in record.error
    assert actuator.calls == [5, 5, 5] and sleeps.waits == [1.0, 1.5] and controller.spec == 2
    record = step(controller, 2.0)
    assert record.actuated and actuator.calls == [5, 5, 5, 5] and controller.spec == 5


def test_backoff_doubles_up_to_the_cap():
    assert Backoff(attempts=6, base=1.0, factor=2.0, cap=5.0).delays() == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert Backoff(attempts=1).delays() == []
    with pytest.raises(ValueError):
        Backoff(attempts=0)


# --------------------------------------------------------------------------- dry run and loop


def test_dry_run_decides_and_logs_but_never_actuates(caplog):
    controller, _, actuator, _ = make(Fixed(7), dry_run=True)
    with caplog.at_level(logging.INFO, logger="tidal.live.decisions"):
        records = steps(controller, [1.0, 2.0, 3.0])
    assert actuator.calls == [] and actuator.replicas == 2
    assert all(r.dry_run and r.desired == 7 and not r.actuated for r in records)
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tidal.live.decisions"]
    assert len(logged) == 3 and all(entry["dry_run"] for entry in logged)


def test_run_steps_on_the_sync_period_with_the_given_clock():
    controller, *_ = make(Fixed(3), sync_period=0.01)
    ticks = iter(range(1000, 2000))
    done = asyncio.run(controller.run(steps=3, clock=lambda: float(next(ticks))))
    assert done == 3 and [r.time for r in controller.records] == [1000.0, 1001.0, 1002.0]


def test_run_stops_when_asked():
    controller, *_ = make(Fixed(3), sync_period=30.0)

    async def go():
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop=stop))
        await asyncio.sleep(0.05)
        stop.set()
        return await asyncio.wait_for(task, 2.0)

    assert asyncio.run(go()) == 1


def test_controller_metrics_count_decisions_by_mode():
    controller, source, *_ = make(Fixed(3), fallback=FallbackRule(failure_threshold=1, replicas=4))
    steps(controller, [1.0])
    source.fail = True
    steps(controller, [2.0, 3.0])
    m = controller.metrics
    assert m.decisions.labels(mode="policy")._value.get() == 1
    assert m.decisions.labels(mode="hold")._value.get() == 1
    assert m.decisions.labels(mode="fallback")._value.get() == 1
    assert m.desired._value.get() == 4
    assert not math.isnan(m.desired._value.get())


def test_bad_bounds_are_rejected():
    with pytest.raises(ValueError, match="min <= max"):
        make(Fixed(1), min_replicas=5, max_replicas=2)
