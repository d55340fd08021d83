"""The balancer and its local pool (tidal.serve): proxying, admin API, scaling with draining,
buffering while scaling from zero, drops, crash recovery, metrics.

Each test runs a real stack — the balancer in a background thread, workers as subprocesses —
on ephemeral loopback ports, with few workers and bounded waits.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tidal.loadbalance import make_balancer
from tidal.serve.stack import ServeStack


def http(method: str, url: str, body: object | None = None, headers: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def fire(url: str, n: int, body: dict | None = None, headers: dict | None = None,
               timeout: float = 15.0) -> list[tuple[int, str | None]]:
    """``n`` concurrent POST /predict requests: (status, worker id) each."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async def one():
            async with s.post(url + "/predict", json=body or {"digits": 1}, headers=headers or {}) as r:
                await r.read()
                return r.status, r.headers.get("X-Tidal-Worker")

        return await asyncio.gather(*(one() for _ in range(n)))


def metric_families(url: str) -> dict:
    status, headers, text = http("GET", url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def sample(families: dict, family: str, name: str, **labels) -> float:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, name, labels))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_proxy_admin_api_and_metrics(model_dir):
    with ServeStack(replicas=2, algorithm="round_robin", model_dir=model_dir) as stack:
        state = stack.wait_ready(2)
        ids = sorted(r["id"] for r in state["replicas"])

        results = asyncio.run(fire(stack.url, 6, {"digits": 2}))
        assert [s for s, _ in results] == [200] * 6
        assert sorted(set(w for _, w in results)) == ids  # both workers took requests
        status, headers, body = http("POST", stack.url + "/predict", {"digits": 3})
        out = json.loads(body)
        assert status == 200 and len(out["predictions"]) == 3 and headers["X-Tidal-Worker"] in ids
        # Any path under /v1/ is proxied too (the worker has no such route: its 404 comes back).
        status, headers, _ = http("GET", stack.url + "/v1/models")
        assert status == 404 and headers["X-Tidal-Worker"] in ids

        # The admin API wants the bearer token.
        assert http("GET", stack.admin_url + "/state")[0] == 401
        assert http("GET", stack.admin_url + "/state", headers={"Authorization": "Bearer nope"})[0] == 401
        assert http("GET", stack.admin_url + "/state", headers={"Authorization": stack.token})[0] == 401
        assert http("PUT", stack.admin_url + "/replicas", {"count": 3})[0] == 401
        status, _, body = http("GET", stack.admin_url + "/state", headers=stack.auth_headers)
        state = json.loads(body)
        assert status == 200 and state["desired"] == 2 and state["window_s"] == 10.0
        assert set(state["replicas"][0]) >= {"id", "port", "pid", "state", "started_at", "ready_at", "in_flight"}
        # Per-worker CPU (cores, from /proc) against a one-core request, as metrics-server reports pods.
        assert state["replicas"][0]["requests"] == {"cpu": 1.0}
        state = stack.wait_until(lambda s: all("cpu" in r["usage"] for r in s["replicas"]), timeout=5)
        assert all(0 <= r["usage"]["cpu"] < 4 for r in state["replicas"])
        stats = state["stats"]
        assert set(stats) >= {"rps", "concurrency", "utilization", "latency_p50", "latency_p95", "latency_p99",
                              "drops", "queue_length", "completed", "errors"}
        assert stats["completed"] == 8 and stats["errors"] == 0 and stats["drops"] == 0
        assert stats["rps"] > 0 and 0 < stats["latency_p50"] <= stats["latency_p99"] < 5

        # Bad admin input: a clear 400 / 404, nothing changes.
        auth = stack.auth_headers
        status, _, body = http("PUT", stack.admin_url + "/replicas", {"count": 99}, auth)
        assert status == 400 and "[min, max] = [0, 8]" in json.loads(body)["error"]
        assert http("PUT", stack.admin_url + "/replicas", {"count": "two"}, auth)[0] == 400
        assert http("POST", stack.admin_url + "/replicas", {"add": -5}, auth)[0] == 400
        assert http("DELETE", stack.admin_url + "/replicas/w99", None, auth)[0] == 404
        assert stack.state()["desired"] == 2

        fams = metric_families(stack.url)
        assert sample(fams, "tidal_requests", "tidal_requests_total", code="200") == 7
        assert sample(fams, "tidal_requests", "tidal_requests_total", code="404") == 1
        assert sample(fams, "tidal_request_duration_seconds", "tidal_request_duration_seconds_count") == 8
        assert sample(fams, "tidal_replicas", "tidal_replicas", state="ready") == 2
        assert sample(fams, "tidal_replicas", "tidal_replicas", state="draining") == 0
        assert sample(fams, "tidal_in_flight", "tidal_in_flight") == 0
        assert sample(fams, "tidal_buffered", "tidal_buffered") == 0


def test_scale_in_drains_without_losing_a_request(model_dir):
    with ServeStack(replicas=3, concurrency=2, service_time=0.4, algorithm="least_connections",
                    model_dir=model_dir) as stack:
        before = stack.wait_ready(3)

        async def scenario():
            burst = asyncio.create_task(fire(stack.url, 24))
            await asyncio.sleep(0.15)  # every worker now holds requests
            state = await asyncio.to_thread(stack.set_replicas, 1)
            return await burst, state

        results, during = asyncio.run(scenario())
        assert [s for s, _ in results] == [200] * 24  # nothing lost while two workers drained
        assert len({w for _, w in results}) == 3
        assert during["desired"] == 1
        assert sorted(r["state"] for r in during["replicas"]) == ["draining", "draining", "ready"]
        after = stack.wait_ready(1)
        (survivor,) = after["replicas"]
        for r in before["replicas"]:
            if r["id"] != survivor["id"]:
                assert gone(r["pid"])
        # And back up: POST adds, DELETE drains a named worker.
        status, _, body = http("POST", stack.admin_url + "/replicas", {"add": 1}, stack.auth_headers)
        assert status == 200 and json.loads(body)["desired"] == 2
        state = stack.wait_ready(2)
        victim = state["replicas"][0]["id"]
        status, _, body = http("DELETE", f"{stack.admin_url}/replicas/{victim}", None, stack.auth_headers)
        assert status == 200 and json.loads(body)["desired"] == 1
        state = stack.wait_ready(1)
        assert state["replicas"][0]["id"] != victim


def test_scale_from_zero_buffers_then_serves(model_dir):
    with ServeStack(replicas=0, model_dir=model_dir, load_delay=0.3) as stack:
        assert stack.state()["replicas"] == []

        async def scenario():
            burst = asyncio.create_task(fire(stack.url, 5))
            buffered = await asyncio.to_thread(stack.wait_until, lambda s: s["buffered"] == 5, 5.0)
            fams = await asyncio.to_thread(metric_families, stack.url)
            await asyncio.to_thread(stack.set_replicas, 1)
            return await burst, buffered, fams

        results, buffered, fams = asyncio.run(scenario())
        assert [s for s, _ in results] == [200] * 5
        assert buffered["stats"]["queue_length"] == 5
        assert buffered["stats"]["concurrency"] > 0  # buffered requests count as in the system
        assert sample(fams, "tidal_buffered", "tidal_buffered") == 5
        assert sample(fams, "tidal_in_flight", "tidal_in_flight") == 5
        state = stack.state()
        assert state["buffered"] == 0 and state["stats"]["completed"] == 5
        assert state["stats"]["latency_p50"] > 0.3  # they waited for the cold start


def test_buffer_limit_and_timeout_answer_503(model_dir):
    with ServeStack(replicas=0, buffer_limit=2, buffer_timeout="400ms", model_dir=model_dir) as stack:
        started = time.monotonic()
        results = asyncio.run(fire(stack.url, 5))
        elapsed = time.monotonic() - started
        assert [s for s, _ in results] == [503] * 5
        assert 0.35 < elapsed < 3.0
        fams = metric_families(stack.url)
        assert sample(fams, "tidal_drops", "tidal_drops_total", reason="buffer full") == 3
        assert sample(fams, "tidal_drops", "tidal_drops_total", reason="buffer timeout") == 2
        assert sample(fams, "tidal_requests", "tidal_requests_total", code="503") == 5
        stats = stack.state()["stats"]
        assert stats["drops"] > 0 and stats["completed"] == 0 and stats["latency_p50"] is None


def test_killed_worker_is_ejected_and_replaced_while_requests_retry(model_dir):
    with ServeStack(replicas=2, concurrency=4, service_time=0.5, algorithm="round_robin",
                    model_dir=model_dir) as stack:
        before = stack.wait_ready(2)
        victim = before["replicas"][0]

        async def scenario():
            burst = asyncio.create_task(fire(stack.url, 8))
            await asyncio.sleep(0.25)  # both workers hold four requests each
            os.kill(victim["pid"], signal.SIGKILL)
            return await burst

        results = asyncio.run(scenario())
        # The victim's requests were idempotent: retried on the survivor (or a replacement).
        assert [s for s, _ in results] == [200] * 8
        assert Counter(w for _, w in results)[victim["id"]] == 0
        after = stack.wait_ready(2, timeout=15)
        assert victim["id"] not in {r["id"] for r in after["replicas"]}
        assert victim["pid"] not in {r["pid"] for r in after["replicas"]}
        assert after["restarts"] >= 1
        fams = metric_families(stack.url)
        assert sample(fams, "tidal_retries", "tidal_retries_total", cause="disconnect") >= 1
        assert asyncio.run(fire(stack.url, 4)) and stack.state()["stats"]["errors"] == 0


def test_consistent_hash_routes_a_key_to_one_worker(model_dir):
    with ServeStack(replicas=3, algorithm="consistent_hash", model_dir=model_dir) as stack:
        stack.wait_ready(3)
        by_header = asyncio.run(fire(stack.url, 6, headers={"X-Tidal-Key": "session-42"}))
        assert len({w for _, w in by_header}) == 1
        by_body = asyncio.run(fire(stack.url, 6, {"digits": 1, "key": "user-7"}))
        assert len({w for _, w in by_body}) == 1
        spread = {asyncio.run(fire(stack.url, 1, headers={"X-Tidal-Key": f"k{i}"}))[0][1] for i in range(30)}
        assert len(spread) >= 2  # different keys land on different workers


def test_stack_start_fails_cleanly_on_a_busy_port(model_dir):
    with ServeStack(replicas=0, model_dir=model_dir) as first, pytest.raises(OSError):
        ServeStack(replicas=0, model_dir=model_dir, port=first.port).start()


def test_hung_worker_fails_probes_and_is_ejected(model_dir):
    with ServeStack(replicas=1, health_timeout=0.2, model_dir=model_dir) as stack:
        (hung,) = stack.wait_ready(1)["replicas"]
        os.kill(hung["pid"], signal.SIGSTOP)  # alive but answering nothing
        try:
            state = stack.wait_until(lambda s: any(r["id"] == hung["id"] and r["state"] == "failed"
                                                   for r in s["replicas"]), timeout=5)
            assert state["desired"] == 1
            assert any(r["id"] != hung["id"] for r in state["replicas"])  # replacement on its way
        finally:
            os.kill(hung["pid"], signal.SIGCONT)  # let it take its SIGTERM and exit
        after = stack.wait_ready(1)
        assert after["replicas"][0]["id"] != hung["id"] and after["restarts"] == 1
        assert http("POST", stack.url + "/predict", {"digits": 1})[0] == 200


def test_worker_that_cannot_start_is_retried_with_backoff(model_dir):
    # "/bin/false -m tidal.serve.worker ..." exits at once without a listening line.
    with ServeStack(replicas=1, python="/bin/false", buffer_timeout="200ms", model_dir=model_dir) as stack:
        time.sleep(2.0)
        state = stack.state()
        assert state["desired"] == 1
        # Backoff 0.5 s, 1 s, 2 s, ...: a handful of attempts in two seconds, not hundreds.
        assert 2 <= state["restarts"] <= 5
        assert http("POST", stack.url + "/predict", {"digits": 1})[0] == 503  # buffered, then dropped


# ----------------------------------------------------------------- retry rules, with scripted workers
#
# The balancer in this process in front of stand-in workers: raw asyncio servers that answer
# /readyz and either serve a request or read it and drop the connection without an answer. No
# worker process is spawned, so each failure is exactly the one scripted.


class StandIn:
    """A stand-in worker on a loopback port: ``mode`` is ``serve`` (200) or ``drop`` (close unanswered)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.hits: list[tuple[str, str]] = []  # (method, path) of every request but /readyz
        self.server: asyncio.Server | None = None

    async def start(self) -> StandIn:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if path != "/readyz":
                    self.hits.append((method, path))
                    if self.mode == "drop":
                        return  # the request arrived whole; the connection closes without an answer
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def balancer_with(ports: list[int]):
    """A started balancer (round robin, 2 retries) whose pool is exactly workers w1, w2, ... on ``ports``.

    Probes run once at start and then only when a proxied request fails (a long health
    interval and a high threshold), so an ejection can only come from that failure's probe.
    """
    from aiohttp import web

    from tidal.serve.balancer import Balancer
    from tidal.serve.config import ServeConfig
    from tidal.serve.pool import READY, WorkerProcess

    config = ServeConfig(port=0, replicas=len(ports), min=0, max=8, algorithm="round_robin", retries=2,
                         health_interval=3600, unhealthy_threshold=100, buffer_timeout=2)
    balancer = Balancer(config, "token")
    spawned: list[int | None] = []
    balancer.pool._spawn = spawned.append  # a replacement would be a real process: record it instead
    for i, port in enumerate(ports, 1):
        worker = WorkerProcess(id=f"w{i}", state=READY, port=port, ready_at=time.time())
        balancer.pool.workers[worker.id] = worker
    runner = web.AppRunner(balancer.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return balancer, runner, url, spawned


async def post(url: str, path: str) -> tuple[int, str | None, str]:
    async with aiohttp.ClientSession() as s, s.post(url + path, json={"digits": 1}) as r:
        return r.status, r.headers.get("X-Tidal-Worker"), await r.text()


def retries_metric(balancer, cause: str) -> float:
    return balancer.m_retries.labels(cause)._value.get()


async def wait_for(predicate, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true (a bounded wait for a background probe, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def test_dropped_connection_fails_a_non_idempotent_request_without_retry():
    async def go():
        dropper, healthy = await StandIn("drop").start(), await StandIn("serve").start()
        balancer, runner, url, _ = await balancer_with([dropper.port, healthy.port])
        try:
            # POST under /v1/ is not idempotent: the worker may have acted on it before the drop.
            status, worker, body = await post(url, "/v1/generate")
            return status, body, list(dropper.hits), list(healthy.hits), retries_metric(balancer, "disconnect")
        finally:
            await runner.cleanup()
            await dropper.stop()
            await healthy.stop()

    status, body, dropped, served, retried = asyncio.run(go())
    assert status == 502 and "lost the connection to worker w1" in body
    assert dropped == [("POST", "/v1/generate")]
    assert served == [] and retried == 0  # never sent a second time


def test_dropped_connection_retries_an_idempotent_request_on_another_worker():
    async def go():
        dropper, healthy = await StandIn("drop").start(), await StandIn("serve").start()
        balancer, runner, url, _ = await balancer_with([dropper.port, healthy.port])
        try:
            status, worker, _ = await post(url, "/predict")  # POST /predict is declared idempotent
            return status, worker, list(dropper.hits), list(healthy.hits), retries_metric(balancer, "disconnect")
        finally:
            await runner.cleanup()
            await dropper.stop()
            await healthy.stop()

    status, worker, dropped, served, retried = asyncio.run(go())
    assert (status, worker) == (200, "w2")
    assert dropped == [("POST", "/predict")] and served == [("POST", "/predict")] and retried == 1


def test_refused_connection_is_retried_for_any_method_and_the_worker_ejected():
    async def go():
        # A bound socket that never listens: connecting to it is refused, and no one else can take the port.
        import socket

        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        healthy = await StandIn("serve").start()
        balancer, runner, url, spawned = await balancer_with([closed.getsockname()[1], healthy.port])
        try:
            status, worker, _ = await post(url, "/v1/generate")  # not idempotent, but it was never sent
            refused = balancer.pool.workers.get("w1")
            await wait_for(lambda: refused.state == "failed")  # the failure's probe is refused too
            return (status, worker, list(healthy.hits), retries_metric(balancer, "connect"), refused.state,
                    balancer.pool.restarts, spawned)
        finally:
            await runner.cleanup()
            await healthy.stop()
            closed.close()

    status, worker, served, retried, state, restarts, spawned = asyncio.run(go())
    assert (status, worker) == (200, "w2")
    assert served == [("POST", "/v1/generate")] and retried == 1
    assert state == "failed" and restarts == 1 and spawned == [None]  # ejected, and a replacement asked for


@pytest.mark.parametrize("path, idempotent", [("/v1/generate", False), ("/predict", True)])
def test_plain_client_connection_error_is_a_maybe_processed_failure(path, idempotent):
    """aiohttp raises a bare ``ClientConnectionError`` when it fails to send bytes on an open connection:
    the request may have reached the worker, so it is retried only when idempotent, never a 500."""

    async def go():
        first, second = await StandIn("serve").start(), await StandIn("serve").start()
        balancer, runner, url, _ = await balancer_with([first.port, second.port])
        forward = balancer._forward

        async def failing_on_w1(worker, request, body):
            if worker.id == "w1":
                raise aiohttp.ClientConnectionError("Failed to send bytes into the underlying connection")
            return await forward(worker, request, body)

        balancer._forward = failing_on_w1
        failed: list[str] = []
        connection_failed = balancer.pool.connection_failed
        balancer.pool.connection_failed = lambda w: (failed.append(w.id), connection_failed(w))
        try:
            status, worker, body = await post(url, path)
            return status, worker, body, list(second.hits), retries_metric(balancer, "disconnect"), failed
        finally:
            await runner.cleanup()
            await first.stop()
            await second.stop()

    status, worker, body, served, retried, failed = asyncio.run(go())
    assert failed == ["w1"]  # w1 gets no requests until a probe clears or ejects it
    if idempotent:
        assert (status, worker, served, retried) == (200, "w2", [("POST", path)], 1)
    else:
        assert status == 502 and "ClientConnectionError" in body and served == [] and retried == 0


def test_weighted_round_robin_distributes_by_worker_weight():
    async def go():
        workers = [await StandIn("serve").start() for _ in range(2)]
        balancer, runner, url, _ = await balancer_with([w.port for w in workers])
        balancer.algorithm = make_balancer("weighted_round_robin")
        balancer.pool.workers["w1"].weight = 30
        try:
            return Counter([(await post(url, "/predict"))[1] for _ in range(40)])
        finally:
            await runner.cleanup()
            for w in workers:
                await w.stop()

    assert asyncio.run(go()) == {"w1": 30, "w2": 10}  # one full smooth-WRR period of weights 30 and 10


def test_weights_come_from_the_config_and_the_admin_api(model_dir):
    with ServeStack(replicas=1, algorithm="weighted_round_robin", weight=5, model_dir=model_dir) as stack:
        (first,) = stack.wait_ready(1)["replicas"]
        assert first["weight"] == 5
        auth = stack.auth_headers
        for bad in ({"add": 1, "weight": 0}, {"add": 1, "weight": "big"}, {"add": 0, "weight": 10}):
            status, _, body = http("POST", stack.admin_url + "/replicas", bad, auth)
            assert status == 400 and json.loads(body)["error"].startswith("weight:")
        status, _, body = http("POST", stack.admin_url + "/replicas", {"add": 1, "weight": 15}, auth)
        assert status == 200 and json.loads(body)["desired"] == 2
        state = stack.wait_ready(2)
        weights = {r["id"]: r["weight"] for r in state["replicas"]}
        assert sorted(weights.values()) == [5, 15]
        results = asyncio.run(fire(stack.url, 20))  # one period of weights 5 and 15
        assert [s for s, _ in results] == [200] * 20
        by_weight = Counter(weights[w] for _, w in results)
        assert by_weight == {5: 5, 15: 15}
