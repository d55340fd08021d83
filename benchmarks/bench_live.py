"""Live benchmarks: simulator-vs-live parity, and the balancer's overhead next to nginx.

``parity``
    One short step-load scenario run twice with the same policy block and the same arrivals:
    live and simulated (``tidal.sim.simulate``). Live, as a user runs it: ``tidal serve``
    (balancer and workers) and ``tidal run`` (the controller) each in a process of its own, and
    the load from ``tidal load``'s generator in this one. The simulator gets what was measured live first: the workers'
    cold start (``ready_at - started_at`` from ``/admin/state``) and their service time (the
    worker's own ``tidal_worker_request_duration_seconds``, at one request at a time). Prints the
    two replica timelines side by side, one row per sync period, and the latency percentiles.
``overhead``
    One worker (the real digits MLP, no emulated service time) reached three ways: directly,
    through tidal's balancer, and through nginx (a generated config on a loopback port, no
    daemon, stopped at the end; ``apt-get install -y nginx`` if missing). For each: latency at a
    moderate open-loop rate (``tidal load``'s generator) and maximum throughput with ``wrk``
    (closed loop; the generator's closed-loop mode when wrk is missing).

Run::

    .venv/bin/python benchmarks/bench_live.py              # both (about 5 minutes)
    .venv/bin/python benchmarks/bench_live.py --quick      # smoke check (about 2 minutes)
    .venv/bin/python benchmarks/bench_live.py --only overhead --json live.json

Everything listens on 127.0.0.1 and runs on this machine's cores together (load generator,
balancer, workers, nginx, wrk), so absolute figures depend on the core count; the differences
between the three paths are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from tidal.config import scenario_from_dict
from tidal.live import controller_config_from_dict
from tidal.loadgen import LoadGenerator, load_spec_from_dict, run_load, sim_chunk_seconds
from tidal.serve import model as model_mod
from tidal.serve.stack import ServeStack
from tidal.sim import simulate

BENCHMARKS = ("parity", "overhead")

# --------------------------------------------------------------------------- the parity scenario

SYNC = 2.0
CONCURRENCY = 2            # slots per worker
SERVICE_TIME = 0.2         # emulated model time per request (the worker's --service-time)
LOAD_DELAY = 2.0           # emulated model load on every cold start (the worker's --load-delay)
POLICY = {"name": "target_utilization", "target": 0.5, "window": "6s"}
REPLICAS = {"min": 1, "max": 8, "initial": 1}
SIZES = {
    # step: low -> 5x low at `at`; duration is the whole run.
    "full": {"duration": 180.0, "at": 60.0, "low": 4.0, "high": 20.0, "calib_requests": 60,
             "rate": 200.0, "rate_s": 15.0, "max_s": 15, "clients": 32, "warmup_s": 3.0},
    "quick": {"duration": 60.0, "at": 20.0, "low": 4.0, "high": 20.0, "calib_requests": 30,
              "rate": 100.0, "rate_s": 5.0, "max_s": 5, "clients": 32, "warmup_s": 1.0},
}


def parity_scenario(size: dict[str, Any], cold_start: float, service_mean: float, service_cv: float) -> dict:
    """The scenario both worlds run, with the live measurements plugged in."""
    service_time: Any = ({"distribution": "deterministic", "mean": service_mean} if service_cv < 0.05
                         else {"distribution": "gamma", "mean": service_mean, "cv": service_cv})
    return {
        "name": "live-parity",
        "seed": 5,
        "duration": size["duration"],
        "workload": {"kind": "step", "rate": size["low"], "to": size["high"], "at": size["at"]},
        "service": {"service_time": service_time, "concurrency": CONCURRENCY, "queue_limit": 100_000,
                    "cold_start": cold_start},
        # The balancer's defaults: power of two choices, a 1000-request buffer, 30 s buffer timeout.
        "load_balancer": {"algorithm": "power_of_two", "buffer_limit": 1000, "buffer_timeout": 30},
        "replicas": REPLICAS,
        # Live, each scrape is the balancer's stats over the last sync period (stats_window = SYNC).
        "control": {"sync_period": SYNC, "scrape_interval": SYNC},
        "slo": {"latency": 1.0, "target": 0.99},
        "policy": POLICY,
    }


# --------------------------------------------------------------------------- helpers


def prometheus_value(url: str, name: str) -> float:
    """Sum of the samples called ``name`` on a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 1000:.1f}"


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx = shutil.which("nginx")
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip() if nginx else "missing"
    wrk = shutil.which("wrk")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "nginx": version,
            "wrk": "present" if wrk else "missing"}


# --------------------------------------------------------------------------- parity


def calibrate(model_dir: Path, size: dict[str, Any]) -> dict[str, Any]:
    """Cold start and service time of the workers, measured live."""
    with ServeStack(replicas=0, min=0, max=4, concurrency=CONCURRENCY, service_time=SERVICE_TIME,
                    load_delay=LOAD_DELAY, model_dir=model_dir) as stack:
        stack.set_replicas(2)  # two at once, as a scale-out starts them
        state = stack.wait_ready(2, timeout=60)
        cold = [r["ready_at"] - r["started_at"] for r in state["replicas"]]
        worker = state["replicas"][0]
        base = f"http://127.0.0.1:{worker['port']}"
        # One request at a time, straight to the worker: its histogram holds pure service times.
        result = asyncio.run(run_load(load_spec_from_dict(
            {"url": base, "clients": 1, "max_requests": size["calib_requests"], "timeout": "30s"})))
        total = prometheus_value(base + "/metrics", "tidal_worker_request_duration_seconds_sum")
        count = prometheus_value(base + "/metrics", "tidal_worker_request_duration_seconds_count")
    lat = np.array([d - s for d, s, st in zip(result.log.done, result.log.sent, result.log.status) if st == 200])
    return {"cold_start_s": float(np.mean(cold)), "cold_starts_s": cold, "service_mean_s": total / count,
            "service_cv": float(lat.std() / lat.mean()), "requests": int(count),
            "client_latency_mean_s": float(lat.mean())}


async def _live(scenario, model_dir: Path, workdir: Path) -> dict[str, Any]:
    """The scenario live: ``tidal serve`` and ``tidal run`` as processes, the load from this one."""
    sc = scenario
    with ServeProcess(model_dir, workdir, replicas=sc.replicas.initial_count, min=sc.replicas.min,
                      max=sc.replicas.max, concurrency=CONCURRENCY, service_time=SERVICE_TIME,
                      load_delay=LOAD_DELAY, stats_window=SYNC, algorithm="power_of_two", buffer_limit=1000,
                      buffer_timeout=30) as serve:
        await asyncio.to_thread(serve.wait_ready, sc.replicas.initial_count, 60)
        config = {
            "name": "parity", "policy": sc.policy, "replicas": {"min": sc.replicas.min, "max": sc.replicas.max},
            "sync_period": SYNC,
            "metrics": {"source": "balancer", "url": serve.url, "token_file": str(serve.token_file)},
        }
        controller_config_from_dict(config)  # a bad block fails here, not inside the subprocess
        gen = LoadGenerator(load_spec_from_dict({
            "url": serve.url, "workload": sc.workload.model_dump(), "seed": sc.seed, "duration": sc.duration,
            "chunk": sim_chunk_seconds(sc.control), "timeout": "60s", "connections": 2000}))
        workers: dict[str, dict[str, Any]] = {}
        stop = asyncio.Event()

        async def sample_workers() -> None:
            while not stop.is_set():
                state = await asyncio.to_thread(serve.state)
                for r in state["replicas"]:
                    workers[r["id"]] = r
                await asyncio.sleep(0.5)

        with RunProcess(config, workdir) as control:
            # The load starts right after the controller's first decision, as the simulation's
            # arrivals start with its first control tick.
            await asyncio.to_thread(control.wait_first, 60)
            wall0 = time.time()
            sampler = asyncio.create_task(sample_workers())
            result = await gen.run()
            stop.set()
            await sampler
        cold = [w["ready_at"] - w["started_at"] for w in workers.values()
                if w["ready_at"] is not None and w["started_at"] > wall0]
        return {"wall0": wall0, "records": control.records, "load": result.summary, "cold_starts_s": cold}


def bench_parity(model_dir: Path, size: dict[str, Any], workdir: Path) -> dict[str, Any]:
    print("\n== parity: the same step load, live and simulated ==", flush=True)
    cal = calibrate(model_dir, size)
    print(f"measured live: cold start {cal['cold_start_s']:.2f} s (workers {', '.join(f'{c:.2f}' for c in cal['cold_starts_s'])}); "
          f"service time {cal['service_mean_s'] * 1000:.1f} ms (cv {cal['service_cv']:.3f}, worker histogram over "
          f"{cal['requests']} requests; {cal['client_latency_mean_s'] * 1000:.1f} ms at the client)", flush=True)
    scenario = scenario_from_dict(parity_scenario(size, cal["cold_start_s"], cal["service_mean_s"], cal["service_cv"]))
    started = time.perf_counter()
    sim = simulate(scenario)
    sim_wall = time.perf_counter() - started
    print(f"simulated {scenario.duration:.0f} s in {sim_wall:.2f} s; running it live ...", flush=True)
    live = asyncio.run(_live(scenario, model_dir, workdir))

    ticks = sim.ticks.to_pydict()
    n = len(ticks["time"])
    per_sync = max(1, round(SYNC / (ticks["time"][1] - ticks["time"][0]))) if n > 1 else 1
    records = live["records"]
    rows = []
    print(f"\n{'t (s)':>6} | {'live desired':>12} {'sim desired':>11} | {'live ready':>10} {'sim ready':>9}")
    for i, rec in enumerate(records):
        k = i * per_sync
        if k >= n:
            break
        # The simulator records ready at the end of a tick; the controller sees it at the start.
        sim_ready = ticks["ready"][k - 1] if k > 0 else REPLICAS["initial"]
        row = {"t": round(rec["time"] - live["wall0"], 1), "live_desired": rec["desired"],
               "sim_desired": ticks["desired"][k], "live_ready": rec["ready"], "sim_ready": sim_ready}
        rows.append(row)
        print(f"{i * SYNC:6.0f} | {row['live_desired']:>12} {row['sim_desired']:>11} | {row['live_ready']:>10} "
              f"{row['sim_ready']:>9}")

    s, L = sim.summary, live["load"]
    live_d = np.array([r["live_desired"] for r in rows])
    sim_d = np.array([r["sim_desired"] for r in rows])
    live_r = np.array([r["live_ready"] for r in rows])
    sim_r = np.array([r["sim_ready"] for r in rows])

    def first_above(values: np.ndarray, level: int) -> float | None:
        idx = np.flatnonzero(values > level)
        return float(idx[0] * SYNC) if idx.size else None

    compare = {
        "first scale-out (s)": (first_above(live_d, REPLICAS["initial"]), first_above(sim_d, REPLICAS["initial"])),
        "peak desired": (int(live_d.max()), int(sim_d.max())),
        "mean ready": (float(live_r.mean()), float(sim_r.mean())),
        "ready at the end": (int(live_r[-1]), int(sim_r[-1])),
        "scale decisions (changes)": (int((np.diff(live_d) != 0).sum()), int((np.diff(sim_d) != 0).sum())),
        "latency p50 (ms)": (L.latency.p50 * 1000, s.latency_p50 * 1000),
        "latency p95 (ms)": (L.latency.p95 * 1000, s.latency_p95 * 1000),
        "latency p99 (ms)": (L.latency.p99 * 1000, s.latency_p99 * 1000),
        "requests": (L.sent, s.arrivals),
        "answered / completed": (L.ok, s.completions),
        "errors / drops": (L.sent - L.ok, s.drops),
    }
    print(f"\n{'':28} {'live':>10} {'sim':>10}")
    for name, (a, b) in compare.items():
        fa = "-" if a is None else (f"{a:.2f}" if isinstance(a, float) else str(a))
        fb = "-" if b is None else (f"{b:.2f}" if isinstance(b, float) else str(b))
        print(f"{name:28} {fa:>10} {fb:>10}")
    mad = float(np.abs(live_d - sim_d).mean())
    print(f"mean |desired live - desired sim| per sync period: {mad:.2f}; cold starts during the live run: "
          + ", ".join(f"{c:.2f}" for c in sorted(live["cold_starts_s"])) + " s")
    return {"calibration": cal, "scenario": scenario.model_dump(mode="json"), "timeline": rows,
            "compare": {k: list(v) for k, v in compare.items()}, "mean_abs_desired_diff": mad,
            "live_cold_starts_s": live["cold_starts_s"], "live_load": L.to_dict(), "sim_summary": s.to_dict(),
            "sim_wall_s": sim_wall}


# --------------------------------------------------------------------------- overhead


NGINX_CONF = """worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream worker {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://worker;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground with a generated config (``daemon off``); stopped on exit."""

    def __init__(self, upstream_port: int, workdir: Path) -> None:
        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        self.prefix = workdir / "nginx"
        self.upstream = upstream_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        if self.binary is None:
            raise FileNotFoundError("nginx not found (Debian: apt-get install -y nginx)")
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=self.prefix, upstream=self.upstream, port=self.port))
        self.proc = subprocess.Popen([self.binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.proc.stderr.read().decode().strip()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise TimeoutError("nginx did not start listening")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(url: str, seconds: int, connections: int, workdir: Path) -> dict[str, Any]:
    """``wrk`` closed loop, POST /predict {"digits": 1}; its rate and latency percentiles."""
    script = workdir / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.body = \'{"digits": 1}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url + "/predict"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    pct = {m.group(1): float(m.group(2)) * _WRK_UNITS[m.group(3)]
           for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"tool": "wrk", "rps": float(rps.group(1)) if rps else math.nan, "p50": pct.get("50", math.nan),
            "p99": pct.get("99", math.nan), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else "", "command": " ".join(cmd)}


def run_closed(url: str, seconds: float, clients: int) -> dict[str, Any]:
    result = asyncio.run(run_load(load_spec_from_dict({"url": url, "clients": clients, "duration": seconds,
                                                       "timeout": "30s"})))
    s = result.summary
    return {"tool": "tidal load --closed", "rps": s.ok_rps, "p50": s.latency.p50, "p99": s.latency.p99,
            "non_2xx": s.responses - s.ok, "socket_errors": ", ".join(f"{k} {v}" for k, v in s.errors.items())}


def run_rate(url: str, rate: float, seconds: float) -> dict[str, Any]:
    result = asyncio.run(run_load(load_spec_from_dict({"url": url, "workload": {"kind": "constant", "rate": rate},
                                                       "duration": seconds, "seed": 9, "timeout": "30s"})))
    s = result.summary
    return {"sent": s.sent, "ok": s.ok, "p50": s.latency.p50, "p95": s.latency.p95, "p99": s.latency.p99,
            "send_lag_p99": s.send_lag.p99}


class ServeProcess:
    """``tidal serve`` in its own process, as a user starts it (in-process, the balancer would share
    this one's GIL with the load generator). ``fields`` are serve config fields, written to a YAML
    file (every field, including those without a flag)."""

    def __init__(self, model_dir: Path, workdir: Path, **fields: Any) -> None:
        self.port = free_port()
        self.token_file = workdir / "serve-token"
        config = {"port": self.port, "admin_token_file": str(self.token_file), "model_dir": str(model_dir), **fields}
        self.config_file = workdir / f"serve-{self.port}.yaml"
        self.config_file.write_text(json.dumps(config))  # JSON is YAML
        self.cmd = [sys.executable, "-m", "tidal.cli.main", "serve", str(self.config_file)]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        token = self.token_file.read_text().strip()
        req = urllib.request.Request(self.url + "/admin/state", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback only
            return json.loads(resp.read())

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def wait_ready(self, n: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"tidal serve exited with {self.proc.returncode}: {' '.join(self.cmd)}")
            try:
                state = self.state()
                if sum(r["state"] == "ready" for r in state["replicas"]) >= n:
                    return state
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"tidal serve: {n} worker(s) not ready within {timeout:g} s")

    def __exit__(self, *exc: object) -> None:
        _terminate(self.proc)


class RunProcess:
    """``tidal run`` (the controller) in its own process; its decisions are the JSON lines it prints."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config_file = workdir / "controller.yaml"
        self.config_file.write_text(json.dumps(config, default=str))  # JSON is YAML
        self.cmd = [sys.executable, "-m", "tidal.cli.main", "run", str(self.config_file)]
        self.stderr_file = workdir / "controller.stderr"
        self.records: list[dict[str, Any]] = []
        self.proc: subprocess.Popen | None = None
        self._first = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> RunProcess:
        with self.stderr_file.open("w") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == "decision":
                    self.records.append(record)
                    self._first.set()

    def wait_first(self, timeout: float) -> None:
        """Until the first decision is printed (the controller has imported, scraped and decided)."""
        deadline = time.monotonic() + timeout
        while not self._first.wait(0.2):
            assert self.proc is not None
            if self.proc.poll() is None and time.monotonic() < deadline:
                continue
            code = self.proc.poll()
            tail = self.stderr_file.read_text()[-2000:].strip()
            raise TimeoutError(f"tidal run: no decision within {timeout:g} s (exit status {code}): "
                               f"{' '.join(self.cmd)}\n{tail}")

    def __exit__(self, *exc: object) -> None:
        # SIGTERM: the controller finishes its current step and exits.
        _terminate(self.proc)
        if self._reader is not None:
            self._reader.join(10)


def _terminate(proc: subprocess.Popen | None) -> None:
    """SIGTERM, a grace period, then SIGKILL."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def bench_overhead(model_dir: Path, size: dict[str, Any], workdir: Path) -> dict[str, Any]:
    print("\n== overhead: one worker directly, through tidal's balancer, through nginx ==", flush=True)
    use_wrk = shutil.which("wrk") is not None
    out: dict[str, Any] = {"paths": {}}
    with ServeProcess(model_dir, workdir, replicas=1, min=1, max=1, concurrency=8) as serve:
        state = serve.wait_ready(1)
        worker_url = f"http://127.0.0.1:{state['replicas'][0]['port']}"
        targets = {"direct": worker_url, "tidal": serve.url}
        try:
            nginx = Nginx(state["replicas"][0]["port"], workdir).__enter__()
            targets["nginx"] = nginx.url
        except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
            nginx = None
            print(f"nginx skipped: {exc}")
        try:
            for name, url in targets.items():
                run_closed(url, size["warmup_s"], 4)  # warm connections and code paths
                at_rate = run_rate(url, size["rate"], size["rate_s"])
                at_max = (run_wrk(url, size["max_s"], size["clients"], workdir) if use_wrk
                          else run_closed(url, size["max_s"], size["clients"]))
                out["paths"][name] = {"url": url, "at_rate": at_rate, "max": at_max}
                print(f"  {name:7} {size['rate']:.0f}/s: p50 {ms(at_rate['p50'])} ms, p99 {ms(at_rate['p99'])} ms | "
                      f"max {at_max['rps']:.0f}/s (p50 {ms(at_max['p50'])} ms, p99 {ms(at_max['p99'])} ms, "
                      f"{at_max['tool']}, {size['clients']} connections)", flush=True)
        finally:
            if nginx is not None:
                nginx.__exit__(None, None, None)
    direct = out["paths"]["direct"]
    print(f"\n{'path':8} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'max req/s':>10} "
          f"{'p50@max':>8} {'p99@max':>8}")
    for name, p in out["paths"].items():
        add50 = p["at_rate"]["p50"] - direct["at_rate"]["p50"]
        add99 = p["at_rate"]["p99"] - direct["at_rate"]["p99"]
        p["added_p50"], p["added_p99"] = add50, add99
        print(f"{name:8} {ms(p['at_rate']['p50']):>8} {ms(p['at_rate']['p99']):>8} {ms(add50):>8} {ms(add99):>8} "
              f"{p['max']['rps']:>10.0f} {ms(p['max']['p50']):>8} {ms(p['max']['p99']):>8}")
    out["rate"] = size["rate"]
    out["clients"] = size["clients"]
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 2 minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--model-dir", type=Path, help="trained model cache (default: a temporary folder)")
    args = parser.parse_args(argv)
    selected = BENCHMARKS if args.only is None else tuple(x.strip() for x in args.only.split(","))
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    size = SIZES["quick" if args.quick else "full"]
    info = machine_info()
    print("  ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    results: dict[str, Any] = {"machine": info, "mode": "quick" if args.quick else "full"}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tidal-bench-live-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir or workdir / "model"
        model_mod.ensure_model(model_dir)
        if "parity" in selected:
            results["parity"] = bench_parity(model_dir, size, workdir)
        if "overhead" in selected:
            results["overhead"] = bench_overhead(model_dir, size, workdir)
    results["wall_s"] = time.perf_counter() - started
    print(f"\ndone in {results['wall_s']:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
