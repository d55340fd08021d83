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
