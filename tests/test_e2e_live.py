"""End to end, live: ``tidal serve`` (ServeStack) + the controller (``tidal run``'s Controller) +
the load generator (``tidal load``), all on loopback.

Workers emulate a heavier model (``service_time``) and a cold start (``load_delay``), so a few
requests per second load them; the controller decides every second on the balancer's stats.
Each test bounds every wait; the whole file takes about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tidal.live import Controller, controller_config_from_dict
from tidal.loadgen import LoadGenerator, load_spec_from_dict
from tidal.serve.stack import ServeStack

SYNC = 1.0


@contextlib.asynccontextmanager
async def controlled(stack: ServeStack, tmp_path: Path, policy: dict[str, Any], *, lo: int,
                     hi: int) -> AsyncIterator[Controller]:
    """A controller scaling ``stack`` every second, as ``tidal run`` would (config file semantics)."""
    token_file = tmp_path / "admin-token"
    token_file.write_text(stack.token + "\n")
    config = controller_config_from_dict({
        "name": "e2e", "policy": policy, "replicas": {"min": lo, "max": hi}, "sync_period": SYNC,
        "metrics": {"source": "balancer", "url": stack.url, "token_file": str(token_file), "timeout": "2s"},
        "fallback": {"failure_threshold": 3, "replicas": "hold"},
    })
    controller = Controller.from_config(config)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop=stop))
    try:
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await controller.aclose()


def load(stack: ServeStack, workload: dict[str, Any], duration: float, seed: int = 1) -> LoadGenerator:
    return LoadGenerator(load_spec_from_dict({"url": stack.url, "workload": workload, "duration": duration,
                                              "seed": seed, "timeout": "30s"}))


async def wait_state(stack: ServeStack, predicate, timeout: float) -> dict[str, Any]:
    return await asyncio.to_thread(stack.wait_until, predicate, timeout, 0.1)


def counts(state: dict[str, Any]) -> dict[str, int]:
    out = {"starting": 0, "ready": 0, "draining": 0, "failed": 0}
    for r in state["replicas"]:
        out[r["state"]] += 1
    return out


def test_step_to_5x_load_scales_out_then_back_in(model_dir, tmp_path):
    # One worker serves 10 req/s (one slot, 100 ms); the policy keeps slots half busy.
    # 3 req/s -> 15 req/s (5x) for 14 s -> 3 req/s: 1 worker -> about 3 -> 1.
    at, high = 5.0, 14.0
    with ServeStack(replicas=1, min=1, max=6, concurrency=1, service_time=0.1, load_delay=1.0,
                    stats_window=2.0, seed=7, model_dir=model_dir) as stack:
        stack.wait_ready(1, timeout=20)

        async def run():
            policy = {"name": "target_utilization", "target": 0.5, "window": "3s"}
            async with controlled(stack, tmp_path, policy, lo=1, hi=6) as controller:
                gen = load(stack, {"kind": "spike", "base": 3, "peak": 15, "at": at, "rise": 0,
                                   "duration": high, "decay": 0}, duration=at + high + 12.0)
                result = await gen.run()
                # Scaled in: the extra workers drained and exited.
                final = await wait_state(stack, lambda s: counts(s) == {"starting": 0, "ready": 1, "draining": 0,
                                                                         "failed": 0}, 15.0)
                return result, list(controller.records), final

        result, records, final = asyncio.run(asyncio.wait_for(run(), 90))

    s = result.summary
    assert s.sent == s.ok == s.responses > 200 and s.errors == {}  # nothing lost, all 200
    t0 = records[0].time
    timeline = [(round(r.time - t0, 1), r.desired, r.ready) for r in records]
    before = [r for r in records if r.time - t0 < at - 0.5]
    during = [r for r in records if at <= r.time - t0 <= at + high + 1]
    after = [r for r in records if r.time - t0 > at + high + 8]
    assert before and all(r.desired == 1 for r in before), timeline
    assert max(r.desired for r in during) >= 3, timeline
    assert max(r.ready for r in during) >= 3, timeline
    assert after and all(r.desired == 1 for r in after), timeline
    assert len(s.by_worker) >= 3  # the new workers served traffic
    assert final["desired"] == 1 and final["stats"]["errors"] == 0


def test_scale_from_zero_serves_the_first_request(model_dir, tmp_path):
    with ServeStack(replicas=0, min=0, max=2, concurrency=2, load_delay=1.0, stats_window=2.0,
                    model_dir=model_dir) as stack:
        assert stack.state()["replicas"] == []

        async def run():
            policy = {"name": "target_utilization", "target": 0.5, "window": "2s"}
            async with controlled(stack, tmp_path, policy, lo=0, hi=2) as controller:
                await asyncio.sleep(1.5 * SYNC)
                idle = list(controller.records)
                gen = LoadGenerator(load_spec_from_dict({"url": stack.url, "workload": {"kind": "constant", "rate": 2},
                                                         "duration": 3, "max_requests": 1, "timeout": "30s"}))
                result = await gen.run()
                state = stack.state()
                return idle, result, state, list(controller.records)

        idle, result, state, records = asyncio.run(asyncio.wait_for(run(), 60))

    assert idle and all(r.desired == 0 for r in idle)  # nothing to serve: stays at zero
    s = result.summary
    assert s.sent == 1 and s.ok == 1 and s.by_status == {"200": 1}
    assert s.latency.max > 1.0  # it was buffered through a cold start (1 s load delay at least)
    assert counts(state)["ready"] == 1 and state["buffered"] == 0
    assert any(r.desired == 1 and "scale from zero" in r.reason for r in records)


def retries(stack: ServeStack) -> float:
    """``tidal_retries_total`` over all causes, from the balancer's /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(stack.url + "/metrics", timeout=5) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text) if family.name == "tidal_retries"
               for sample in family.samples if sample.name == "tidal_retries_total")


async def freeze_a_busy_worker(stack: ServeStack, attempts: int = 20) -> dict[str, Any]:
    """SIGSTOP a ready worker that holds requests, once no worker is draining or starting.

    A request can finish between reading the balancer's state and a kill, so the worker is frozen
    first and the state read again: requests still in flight on a frozen worker cannot complete,
    so killing it is certain to cut them off (a worker that finished in time is thawed and another
    one tried).
    """
    for _ in range(attempts):
        busy = await wait_state(stack, lambda s: not counts(s)["draining"] and not counts(s)["starting"]
                                and any(r["state"] == "ready" and r["in_flight"] for r in s["replicas"]), 10.0)
        victim = max((r for r in busy["replicas"] if r["state"] == "ready"), key=lambda r: r["in_flight"])
        os.kill(victim["pid"], signal.SIGSTOP)
        await asyncio.sleep(0.2)  # responses already on the wire reach the balancer
        frozen = next((r for r in (await asyncio.to_thread(stack.state))["replicas"] if r["id"] == victim["id"]), None)
        if frozen is not None and frozen["in_flight"] >= 1:
            return frozen
        os.kill(victim["pid"], signal.SIGCONT)
    raise AssertionError(f"no worker held a request once frozen in {attempts} attempts")


def test_no_request_lost_across_scale_in_and_a_killed_worker(model_dir, tmp_path):
    # 6 req/s of 300 ms on 3 workers x 2 slots (30 % busy): the controller scales in to 2 under
    # load; then a worker holding requests is SIGKILLed. Its requests are retried elsewhere.
    with ServeStack(replicas=3, min=1, max=4, concurrency=2, service_time=0.3, load_delay=1.0,
                    stats_window=2.0, algorithm="least_connections", model_dir=model_dir) as stack:
        stack.wait_ready(3, timeout=20)

        async def run():
            gen = load(stack, {"kind": "constant", "rate": 6}, duration=13.0, seed=3)
            load_task = asyncio.create_task(gen.run())
            await asyncio.sleep(1.5)  # traffic in the stats first, so the scale-in happens under load
            policy = {"name": "target_utilization", "target": 0.5, "window": "2s"}
            async with controlled(stack, tmp_path, policy, lo=1, hi=4) as controller:
                scaled_in = await wait_state(stack, lambda s: s["desired"] < 3, 8.0)
                # Once the drain is over, kill a worker while it holds requests.
                victim = await freeze_a_busy_worker(stack)
                os.kill(victim["pid"], signal.SIGKILL)
                result = await load_task
                after = await wait_state(stack, lambda s: s["restarts"] >= 1 and not counts(s)["starting"], 15.0)
                return scaled_in, victim, result, after, await asyncio.to_thread(retries, stack), list(controller.records)

        scaled_in, victim, result, after, retried, records = asyncio.run(asyncio.wait_for(run(), 60))

    assert scaled_in["desired"] == 2 and counts(scaled_in)["draining"] + counts(scaled_in)["ready"] >= 2
    s = result.summary
    assert s.sent == s.responses == s.ok > 60, s  # every request sent got an answer, all 200
    assert s.errors == {} and s.lost == 0 and s.by_status == {"200": s.sent}
    assert victim["in_flight"] >= 1 and retried >= 1  # the victim's requests were retried, not lost
    assert victim["id"] not in {r["id"] for r in after["replicas"]}
    assert after["restarts"] >= 1 and after["stats"]["errors"] == 0
    assert records and min(r.desired for r in records) <= 2
