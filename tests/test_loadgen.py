"""The load generator (tidal.loadgen, ``tidal load``): the simulator's arrivals, open-loop timing,
the connection cap, error kinds, keys, stopping, the closed loop, and the command line.

Targets are small aiohttp apps on ephemeral loopback ports, in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from aiohttp import web

from conftest import REPO
from tidal.cli import load as load_cmd
from tidal.cli import main as cli_main
from tidal.config import scenario_from_dict
from tidal.core.errors import TidalInputError
from tidal.loadgen import (
    LoadGenerator,
    LoadSpec,
    build_schedule,
    is_loopback_host,
    load_spec_from_dict,
    run_load,
    sim_chunk_seconds,
)
from tidal.sim import Simulation

STEP_SCENARIO = {
    "name": "step",
    "seed": 11,
    "duration": 150,
    "workload": {"kind": "step", "rate": 20, "to": 60, "at": 70},
    "service": {"service_time": "10ms", "concurrency": 2},
    "replicas": {"min": 1, "max": 10, "initial": 1},
    "control": {"sync_period": "2s", "scrape_interval": "1s"},
    "policy": {"name": "static", "replicas": 1},
}


# ---------------------------------------------------------------------------- a target to load


class Target:
    """An aiohttp app on a free loopback port that records what it receives."""

    def __init__(self, delay: float = 0.0, status: Callable[[int], int] = lambda i: 200) -> None:
        self.delay = delay
        self.status = status
        self.arrivals: list[float] = []
        self.keys: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        i = len(self.arrivals)
        self.arrivals.append(time.monotonic())
        self.keys.append(request.headers.get("X-Tidal-Key"))
        await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.json_response({"predictions": [0]}, status=self.status(i), headers={"X-Tidal-Worker": "w1"})
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> Target:
        app = web.Application()
        app.router.add_post("/predict", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def run(coro_fn: Callable[[], Awaitable], limit: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro_fn(), limit))


def spec(url: str, **fields) -> LoadSpec:
    return load_spec_from_dict({"url": url, **fields})


# ---------------------------------------------------------------------------- the schedule


def test_schedule_replays_the_simulators_arrivals_exactly():
    scenario = scenario_from_dict(STEP_SCENARIO)
    sim_times = np.concatenate([times for _, _, times, _, _ in Simulation(scenario).requests()])
    schedule = build_schedule(scenario.workload, seed=scenario.seed, duration=scenario.duration,
                              chunk=sim_chunk_seconds(scenario.control))
    chunks = list(schedule.chunks())
    ours = np.concatenate([c.times for c in chunks])
    np.testing.assert_array_equal(ours, sim_times)
    # The step is in the arrivals: about 20/s before 70 s and 60/s after.
    assert 0.8 * 20 * 70 < (ours < 70).sum() < 1.2 * 20 * 70
    assert 0.8 * 60 * 80 < (ours >= 70).sum() < 1.2 * 60 * 80


def test_schedule_time_scale_and_request_cap():
    workload = scenario_from_dict(STEP_SCENARIO).workload
    base = np.concatenate([c.times for c in build_schedule(workload, seed=1, duration=20).chunks()])
    fast = np.concatenate([c.times for c in build_schedule(workload, seed=1, duration=20, time_scale=0.5).chunks()])
    np.testing.assert_allclose(fast, base * 0.5)
    capped = list(build_schedule(workload, seed=1, duration=20, max_requests=7).chunks())
    assert sum(len(c) for c in capped) == 7


def test_synthetic_workload_needs_a_duration():
    with pytest.raises(TidalInputError, match="duration"):
        build_schedule(scenario_from_dict(STEP_SCENARIO).workload, seed=0, duration=None)


def test_trace_workload_defaults_to_its_length():
    trace = REPO / "data" / "traces" / "nasa_http_1995"
    files = sorted(p for p in trace.glob("*") if p.suffix in (".csv", ".parquet") and "per_second" not in p.name)
    if not files:
        pytest.skip("no NASA trace file shipped")  # pragma: no cover
    sc = scenario_from_dict({**STEP_SCENARIO, "duration": None,
                             "workload": {"kind": "trace", "path": str(files[0]), "preset": "nasa_http",
                                          "end": 600}})
    schedule = build_schedule(sc.workload, seed=0, duration=None)
    assert schedule.duration == pytest.approx(600.0)
    assert sum(len(c) for c in schedule.chunks()) > 0


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("fields, where", [
    ({"url": "http://10.1.2.3:8080", "workload": {"kind": "constant", "rate": 1}, "duration": 1}, "url"),
    ({"url": "http://example.com", "workload": {"kind": "constant", "rate": 1}, "duration": 1}, "url"),
    ({"url": "ftp://127.0.0.1", "workload": {"kind": "constant", "rate": 1}, "duration": 1}, "url"),
    ({"url": "http://127.0.0.1:8080", "duration": 1}, "exactly one of workload"),
    ({"url": "http://127.0.0.1:8080", "clients": 2, "workload": {"kind": "constant", "rate": 1}}, "exactly one"),
    ({"url": "http://127.0.0.1:8080", "clients": 2}, "duration"),
    ({"url": "http://127.0.0.1:8080", "clients": 0, "duration": 1}, "clients"),
    ({"url": "http://127.0.0.1:8080", "workload": {"kind": "constant", "rate": -1}}, "workload.rate"),
    ({"url": "http://127.0.0.1:8080", "workload": {"kind": "constant", "rate": 1}, "timeout": "soon"}, "timeout"),
    ({"url": "http://127.0.0.1:8080", "workload": {"kind": "constant", "rate": 1}, "path": "predict"}, "path"),
    ({"url": "http://127.0.0.1:8080", "workload": {"kind": "constant", "rate": 1}, "connections": 0}, "connections"),
    ({"url": "http://127.0.0.1:8080", "workload": {"kind": "constant", "rate": 1}, "bogus": 1}, "bogus"),
])
def test_bad_specs_name_the_field(fields, where):
    with pytest.raises(TidalInputError) as err:
        load_spec_from_dict(fields)
    assert where in str(err.value)


def test_loopback_hosts_and_remote_opt_in():
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(is_loopback_host(h) for h in ("10.0.0.1", "0.0.0.0", "example.com", "localhost.example.com"))
    s = spec("http://10.1.2.3:8080", workload={"kind": "constant", "rate": 1}, duration=1, allow_remote=True)
    assert s.target == "http://10.1.2.3:8080/predict"
    assert spec("http://127.0.0.1:9/v1/x", clients=1, duration=1).target == "http://127.0.0.1:9/v1/x"


# ---------------------------------------------------------------------------- open loop


def test_open_loop_sends_on_schedule_even_when_the_server_is_slow():
    async def body():
        async with Target(delay=0.4) as target:
            s = spec(target.url, workload={"kind": "constant", "rate": 40}, duration=2, seed=3)
            planned = np.concatenate([c.times for c in build_schedule(s.workload, seed=3, duration=2).chunks()])
            result = await run_load(s)
            return target, result, planned

    target, result, planned = run(body)
    s = result.summary
    assert s.planned == s.sent == s.responses == s.ok == len(planned) == len(target.arrivals)
    assert s.by_status == {"200": s.sent} and s.errors == {} and s.lost == 0 and s.by_worker == {"w1": s.sent}
    # Open loop: a 0.4 s server does not slow the sender; requests overlap at the server.
    assert target.max_in_flight >= 8
    assert s.send_lag.p99 < 0.05
    gaps = np.diff(np.array(target.arrivals))
    np.testing.assert_allclose(gaps, np.diff(planned), atol=0.05)
    assert 0.39 < s.latency.p50 < 0.6 and s.latency.count == s.ok
    assert s.offered_rps == pytest.approx(len(planned) / 2.0)


def test_connection_cap_bounds_requests_in_flight():
    async def body():
        async with Target(delay=0.2) as target:
            s = spec(target.url, workload={"kind": "constant", "rate": 40}, duration=0.5, connections=2, seed=4)
            return target, await run_load(s)

    target, result = run(body)
    assert target.max_in_flight <= 2
    assert result.summary.sent == result.summary.planned == result.summary.ok
    assert result.summary.sent >= 12
    assert result.summary.send_lag.max > 0.5  # the cap made the sender wait


def test_error_kinds_and_status_counts():
    async def body():
        results = {}
        # Nothing listens on a port we just closed.
        async with Target() as closed:
            dead_url = closed.url
        results["connect"] = await run_load(spec(dead_url, workload={"kind": "constant", "rate": 20}, duration=0.5))
        async with Target(delay=1.0) as slow:
            results["timeout"] = await run_load(spec(slow.url, workload={"kind": "constant", "rate": 10}, duration=0.5,
                                                     timeout="200ms"))
        async with Target(status=lambda i: 503 if i % 2 else 200) as flaky:
            results["status"] = await run_load(spec(flaky.url, workload={"kind": "constant", "rate": 40}, duration=0.5))
        return results

    r = run(body)
    c = r["connect"].summary
    assert c.errors == {"connect": c.sent} and c.responses == 0 and c.lost == c.sent > 0
    assert "connect" in c.error_examples
    t = r["timeout"].summary
    assert t.errors == {"timeout": t.sent} and t.sent > 0
    f = r["status"].summary
    assert f.responses == f.sent and set(f.by_status) == {"200", "503"}
    assert f.ok == f.by_status["200"] and f.latency_all.count == f.sent and f.latency.count == f.ok


def test_keys_go_in_the_header_unless_disabled():
    async def body():
        async with Target() as target:
            s = spec(target.url, workload={"kind": "constant", "rate": 50}, duration=0.5, seed=5)
            keys = np.concatenate([c.keys for c in build_schedule(s.workload, seed=5, duration=0.5).chunks()])
            await run_load(s)
            seen = list(target.keys)
            target.keys.clear()
            await run_load(spec(target.url, workload={"kind": "constant", "rate": 50}, duration=0.5, keys=False))
            return keys, seen, list(target.keys)

    keys, seen, unkeyed = run(body)
    assert sorted(seen) == sorted(str(k) for k in keys)
    assert unkeyed and all(k is None for k in unkeyed)


def test_max_requests_caps_an_open_loop():
    async def body():
        async with Target() as target:
            return await run_load(spec(target.url, workload={"kind": "constant", "rate": 200}, duration=5,
                                       max_requests=9))

    s = run(body).summary
    assert s.sent == s.ok == s.planned == 9


def test_stop_waits_for_in_flight_and_abort_cancels():
    async def body():
        async with Target(delay=0.3) as target:
            gen = LoadGenerator(spec(target.url, workload={"kind": "constant", "rate": 50}, duration=30))
            task = asyncio.create_task(gen.run())
            await asyncio.sleep(0.5)
            gen.stop()
            stopped = await task
            gen2 = LoadGenerator(spec(target.url, workload={"kind": "constant", "rate": 50}, duration=30))
            task2 = asyncio.create_task(gen2.run())
            await asyncio.sleep(0.5)
            gen2.abort()
            aborted = await task2
            return stopped, aborted

    stopped, aborted = run(body)
    s = stopped.summary
    assert s.stopped_early and 0.4 < s.span_s < 0.8 and s.sent == s.ok and s.lost == 0
    assert s.planned >= s.sent and s.offered_rps < 200
    a = aborted.summary
    assert a.errors.get("cancelled", 0) > 0 and a.sent == a.responses + a.errors["cancelled"]


def test_closed_loop_keeps_n_requests_in_flight():
    async def body():
        async with Target(delay=0.05) as target:
            return target, await run_load(spec(target.url, clients=4, duration=1))

    target, result = run(body)
    s = result.summary
    assert target.max_in_flight == 4
    assert 50 < s.sent < 90 and s.sent == s.ok and s.mode == "closed"
    assert s.ok_rps == pytest.approx(s.ok / s.elapsed_s)


def test_timeline_bins_by_send_time():
    async def body():
        async with Target() as target:
            return await run_load(spec(target.url, workload={"kind": "step", "rate": 20, "to": 80, "at": 1},
                                       duration=2, seed=2))

    result = run(body)
    rows = result.timeline(1.0)
    assert [r["t"] for r in rows] == [0.0, 1.0]
    assert rows[0]["sent"] < rows[1]["sent"] and sum(r["sent"] for r in rows) == result.summary.sent
    assert all(r["ok"] == r["sent"] and r["errors"] == 0 for r in rows)
    doc = result.to_dict(requests=True)
    assert json.loads(json.dumps(doc))["summary"]["sent"] == result.summary.sent
    assert len(doc["requests"]["sent"]) == result.summary.sent


# ---------------------------------------------------------------------------- the command line


@pytest.fixture
def tidal_main(monkeypatch):
    """The ``tidal`` command line, in-process."""
    return cli_main.main


def test_cli_runs_a_scenario_and_writes_json(tmp_path, tidal_main, capsys):
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**STEP_SCENARIO, "duration": "1s"}))
    out = tmp_path / "res" / "load.json"

    async def body():
        async with Target() as target:
            # The CLI runs its own event loop: give it a thread.
            return await asyncio.to_thread(tidal_main, ["load", target.url, "--scenario", str(scenario),
                                                        "--out", str(out), "--quiet"])

    assert run(body) == 0
    printed = capsys.readouterr().out
    assert "latency 2xx p50" in printed and "scenario step" in printed
    doc = json.loads(out.read_text())
    assert doc["summary"]["sent"] == doc["summary"]["ok"] > 0 and doc["spec"]["seed"] == 11
    assert doc["timeline"] and not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize("argv, message", [
    (["--rate", "fast", "--duration", "1s"], "workload.rate"),
    (["--rate", "5/s"], "--duration"),
    (["--closed", "2", "--duration", "1s", "--timeout=-1s"], "timeout"),
    (["--rate", "5/s", "--duration", "1s", "--body", "{bad"], "--body"),
    (["--rate", "5/s", "--duration", "1s", "-H", "nocolon"], "--header"),
])
def test_cli_bad_input_exits_2_naming_the_field(tidal_main, capsys, tmp_path, argv, message):
    out = tmp_path / "never.json"
    assert tidal_main(["load", "http://127.0.0.1:9", *argv, "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_refuses_a_remote_target(tidal_main, capsys):
    assert tidal_main(["load", "http://192.0.2.1:80", "--rate", "1/s", "--duration", "1s", "--quiet"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_cli_ctrl_c_stops_and_still_prints_the_summary(tmp_path):
    import os
    import signal
    import sys

    out = tmp_path / "load.json"
    async def body():  # `tidal load` in a child process
        async with Target(delay=0.2) as target:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tidal.cli.main", "load", target.url, "--rate", "20/s", "--duration", "60s", "--quiet",
                "--out", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "COLUMNS": "200"})
            while len(target.arrivals) < 10:  # the load is under way
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = await proc.communicate()
            return proc.returncode, stdout.decode(), stderr.decode(), len(target.arrivals)

    rc, stdout, stderr, received = run(body, limit=30)
    assert rc == 130, stderr
    assert "stopping" in stderr and "stopped after" in stdout and "latency 2xx p50" in stdout
    summary = json.loads(out.read_text())["summary"]
    assert summary["stopped_early"] and summary["sent"] == summary["ok"] == received
