"""The balancer source and the local actuator against an aiohttp fake of the admin API (loopback)."""

from __future__ import annotations

import asyncio

import pytest

from tidal.live import BalancerSource, Controller, LocalActuator, SourceError, controller_config_from_dict
from tidal.core.errors import TidalInputError
from tidal.live.faults import AuthError
from tidal.live.sources import parse_admin_state, pod_id
from tidal.live.testing import FakeBalancer
from tidal.policy import build_policy

TOKEN = "t0ken-for-tests"


def run(coro_fn):
    """Run ``coro_fn(balancer)`` with a fake balancer listening on a free loopback port."""

    async def go():
        async with FakeBalancer(token=TOKEN, replicas=2) as balancer:
            return await asyncio.wait_for(coro_fn(balancer), 20)

    return asyncio.run(go())


def test_scrape_reads_window_stats_pods_and_desired():
    async def body(b: FakeBalancer):
        b.stats.update(rps=42.5, concurrency=3.25, utilization=0.4, latency_p50=0.01, latency_p95=0.03,
                       latency_p99=0.05, drops=0.5, queue_length=2)
        b.workers[1]["state"] = "starting"
        b.workers[1]["ready_at"] = None
        b.workers[0]["in_flight"] = 3
        source = BalancerSource(b.url, TOKEN)
        try:
            return await source.scrape(0.0), b.workers
        finally:
            await source.aclose()

    scrape, workers = run(body)
    assert scrape.replicas == 2
    assert scrape.metrics == {"rps": 42.5, "concurrency": 3.25, "utilization": 0.4, "latency_p50": 0.01,
                              "latency_p95": 0.03, "latency_p99": 0.05, "drops": 0.5, "queue_length": 2.0,
                              "ready_replicas": 1.0}
    first, second = scrape.pods
    assert first.ready and first.in_flight == 3 and first.ready_at == workers[0]["ready_at"]
    assert not second.ready and second.ready_at is None and not second.draining
    assert first.id == pod_id(workers[0]["id"]) and first.id != second.id


def test_missing_latency_is_left_out_not_zero():
    scrape = run(lambda b: _scrape(b))
    assert "latency_p95" not in scrape.metrics and scrape.metrics["rps"] == 0.0


async def _scrape(b: FakeBalancer):
    source = BalancerSource(b.url, TOKEN)
    try:
        return await source.scrape(0.0)
    finally:
        await source.aclose()


def test_wrong_or_missing_token_is_a_fatal_error_naming_the_token_file():
    async def body(b: FakeBalancer):
        errors = []
        for token in (None, "wrong"):
            source = BalancerSource(b.url, token)
            try:
                await source.scrape(0.0)
            except AuthError as exc:
                errors.append(exc)
            finally:
                await source.aclose()
        return errors

    errors = run(body)
    assert len(errors) == 2 and all(isinstance(e, TidalInputError) for e in errors)
    assert all(e.where == "metrics.token_file" and "HTTP 401" in e.problem for e in errors)
    assert "no token was sent" in errors[0].problem and "the token was refused" in errors[1].problem


def test_local_actuator_sets_and_reads_the_desired_count():
    async def body(b: FakeBalancer):
        actuator = LocalActuator(b.url, TOKEN)
        try:
            await actuator.scale(5)
            got = await actuator.current()
            await actuator.scale(1)
            return got, await actuator.current(), b.requests
        finally:
            await actuator.aclose()

    got, after, requests = run(body)
    assert (got, after) == (5, 1)
    puts = [(m, p, body) for m, p, body in requests if m == "PUT"]
    assert puts == [("PUT", "/admin/replicas", {"count": 5}), ("PUT", "/admin/replicas", {"count": 1})]


def test_local_actuator_reports_refusals():
    async def body(b: FakeBalancer):
        actuator = LocalActuator(b.url, "wrong")
        try:
            with pytest.raises(AuthError, match="actuator.token_file: PUT .* HTTP 401"):
                await actuator.scale(3)
        finally:
            await actuator.aclose()
        return b.desired

    assert run(body) == 2


def test_controller_scales_the_pool_through_the_admin_api():
    async def body(b: FakeBalancer):
        cfg = controller_config_from_dict({
            "policy": {"name": "target_utilization", "target": 0.5, "window": 0},
            "replicas": {"min": 1, "max": 6},
            "sync_period": "1s",
            "metrics": {"source": "balancer", "url": b.url},
            "fallback": {"failure_threshold": 1, "replicas": 3},
        })
        # Tokens normally come from token_file; here the test hands them over directly.
        waits: list[float] = []

        async def no_wait(seconds: float) -> None:
            waits.append(seconds)

        controller = Controller.from_config(cfg, source=BalancerSource(b.url, TOKEN),
                                            actuator=LocalActuator(b.url, TOKEN), sleep=no_wait)
        try:
            b.stats["utilization"] = 1.0  # 2 replicas at 100 % for a 50 % target -> 4
            first = await controller.step(100.0)
            b.stats["utilization"] = 0.5  # 4 at target: stay
            second = await controller.step(101.0)
            b.down = True  # the balancer answers 503: hold, then fall back past the threshold
            third = await controller.step(102.0)
            fourth = await controller.step(103.0)
            b.down = False
            assert waits == [0.5, 1.0], "the failed fallback actuation was retried with backoff"
            return first, second, third, fourth, b.desired
        finally:
            await controller.aclose()

    first, second, third, fourth, desired = run(body)
    assert (first.current, first.desired, first.actuated) == (2, 4, True)
    assert (second.current, second.desired, second.actuated) == (4, 4, False)
    assert (third.mode, third.desired) == ("hold", 4) and "HTTP 503" in third.error
    assert (fourth.mode, fourth.desired) == ("fallback", 3)
    # The actuator goes through the same (down) balancer, so the fallback is not applied yet.
    assert not fourth.actuated and desired == 4


def test_a_stopped_balancer_is_a_source_error():
    async def go():
        balancer = await FakeBalancer(token=TOKEN).start()
        url = balancer.url
        await balancer.stop()
        source = BalancerSource(url, TOKEN, timeout=2.0)
        try:
            with pytest.raises(SourceError, match="GET http://127.0.0.1"):
                await source.scrape(0.0)
        finally:
            await source.aclose()

    asyncio.run(go())


def test_malformed_state_is_a_source_error():
    with pytest.raises(SourceError, match="malformed"):
        parse_admin_state({"desired": 1, "replicas": [{"id": "a"}]})
    scrape = parse_admin_state({"desired": 0, "replicas": [], "stats": {"rps": None, "latency_p95": float("nan")}})
    assert scrape.metrics == {"ready_replicas": 0.0} and scrape.pods == ()


def test_pod_ids_are_stable_integers():
    assert pod_id("17") == 17
    assert pod_id("worker-a") == pod_id("worker-a") != pod_id("worker-b")
    assert 0 <= pod_id("worker-a") < 2**48


def test_a_refused_token_stops_the_controller_instead_of_holding():
    """Holding on a 401 would hold forever (the same token is refused every poll): the step raises."""

    async def body(b: FakeBalancer):
        for source_token, actuator_token, field, tries in ((None, TOKEN, "metrics.token_file", []),
                                                           (TOKEN, "wrong", "actuator.token_file", [1])):
            b.stats["utilization"] = 1.0  # 2 replicas at 100 % for a 50 % target: the actuator is used
            attempts: list[int] = []
            controller = Controller(
                build_policy({"name": "target_utilization", "target": 0.5, "window": 0}, 1, 6),
                BalancerSource(b.url, source_token), LocalActuator(b.url, actuator_token),
                min_replicas=1, max_replicas=6, sleep=lambda s: asyncio.sleep(0))
            controller._actuation_failed = lambda attempt, exc: attempts.append(attempt)
            try:
                with pytest.raises(AuthError) as info:
                    await controller.step(100.0)
            finally:
                await controller.aclose()
            assert info.value.where == field and "HTTP 401" in info.value.problem
            assert len(controller.records) == 0
            assert attempts == tries  # the refused actuation was tried once, never retried
        return b.desired

    assert run(body) == 2  # nothing was changed


def test_controller_bounds_outside_the_balancers_fail_at_start():
    async def go():
        async with FakeBalancer(token=TOKEN, replicas=2, bounds=(1, 4)) as b:
            outcomes = []
            for lo, hi in ((1, 8), (0, 4), (2, 4)):
                controller = Controller(
                    build_policy({"name": "static", "replicas": 2}, lo, hi), BalancerSource(b.url, TOKEN),
                    LocalActuator(b.url, TOKEN), min_replicas=lo, max_replicas=hi)
                try:
                    outcomes.append(await controller.run(steps=1))
                except TidalInputError as exc:
                    outcomes.append(exc)
                finally:
                    await controller.aclose()
            # A balancer that is down at start is not checked: the loop holds and retries as usual.
            await b.stop()
            controller = Controller(build_policy({"name": "static", "replicas": 2}, 1, 8),
                                    BalancerSource(b.url, TOKEN), LocalActuator(b.url, TOKEN), min_replicas=1,
                                    max_replicas=8)
            try:
                outcomes.append((await controller.run(steps=1), controller.records[-1].mode))
            finally:
                await controller.aclose()
            return outcomes

    too_high, too_low, inside, down = asyncio.run(go())
    for exc, bounds in ((too_high, "1..8"), (too_low, "0..4")):
        assert isinstance(exc, TidalInputError) and exc.where == "replicas"
        assert f"min..max = {bounds} is not within the bounds of local pool via http://127.0.0.1:" in exc.problem
        assert "(1..4)" in exc.problem
    assert inside == 1
    assert down == (1, "hold")
