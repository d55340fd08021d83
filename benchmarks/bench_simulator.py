"""Simulator benchmark: tidal's compiled simulator against the SimPy reference model.

Four benchmarks, all on one CPU core (the process pins itself; children inherit the pinning):

``throughput``
    The reference scenario (100 replicas, power of two choices, 4 slots each, exponential 50 ms
    service, Poisson arrivals at 5,600 req/s = utilization 0.7, target-utilization autoscaling
    every 15 s). tidal simulates >= 20 M requests after a short warm-up run (so compilation is
    excluded); SimPy (``benchmarks/simpy_model.py``) serves a 300 k-request prefix of the *same*
    request stream with the same autoscaling rule. Prints simulated requests per wall second of
    both, their ratio, and where tidal's wall time goes (data-plane kernel, arrival generation,
    Python control plane).
``agreement``
    Common random numbers: tidal and SimPy serve identical requests (~1 M) on 100 static
    replicas; mean, p50, p95 and p99 latency must agree within a tolerance built from a
    batch-means confidence interval of the SimPy estimate plus the histogram's resolution. Then
    the same with autoscaling on at targets 0.7 and 0.5 (ready replicas side by side).
``long``
    One simulated day and one simulated week of a diurnal 500-1,500 req/s service (1,000 req/s
    on average), each in a fresh subprocess (numba cache warm): wall time, CPU time and peak RSS.
``startup``
    A tiny scenario in a fresh subprocess with ``NUMBA_CACHE_DIR`` pointing at an empty folder
    (everything compiles), then again with the same folder (compiled code loaded from disk).

Run::

    .venv/bin/python benchmarks/bench_simulator.py                 # everything (several minutes)
    .venv/bin/python benchmarks/bench_simulator.py --quick         # smoke check (< 60 s)
    .venv/bin/python benchmarks/bench_simulator.py --only agreement
    .venv/bin/python benchmarks/bench_simulator.py --json results.json

Exit status 1 if the static-replica statistical agreement check fails; missed performance
targets are reported, not fatal (they depend on the machine).
"""

from __future__ import annotations

import os

# One core: keep every thread pool at one thread. Set before numpy / numba are imported.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # simpy_model

BENCHMARKS = ("throughput", "agreement", "long", "startup")

# --------------------------------------------------------------------------- the reference system

REPLICAS = 100
CONCURRENCY = 4
MEAN_SERVICE = 0.050  # s
RHO = 0.7
RATE = RHO * REPLICAS * CONCURRENCY / MEAN_SERVICE  # 5,600 req/s
SYNC = 15.0
TARGET = 0.7
SEED = 1

# Targets (printed next to what was measured).
TARGET_TIDAL_RPS = 10e6
TARGET_RATIO = 100.0
TARGET_DAY_S = 15.0
TARGET_WEEK_S = 120.0
TARGET_MEM_BYTES = 1 << 30

# Sizes: full / --quick.
SIZES = {
    "full": {
        "tidal_requests": 20_000_000,
        "simpy_requests": 300_000,
        "repeats": 3,
        "agreement_requests": 1_000_000,
        "long": [("1 day", 86_400.0, TARGET_DAY_S), ("1 week", 7 * 86_400.0, TARGET_WEEK_S)],
        "cold_compile": True,
    },
    "quick": {
        "tidal_requests": 2_000_000,
        "simpy_requests": 30_000,
        "repeats": 1,
        "agreement_requests": 150_000,
        "long": [("1 hour", 3_600.0, None), ("4 hours", 4 * 3_600.0, None)],
        "cold_compile": False,  # compiling from scratch alone takes longer than the quick budget
    },
}

AGREEMENT_BATCHES = 20
AGREEMENT_CONFIDENCE = 0.99
AUTOSCALE_TARGETS = (TARGET, 0.5)


def _duration_for(requests: int, rate: float) -> float:
    """Whole sync periods of simulated time holding at least ``requests`` arrivals on average."""
    return math.ceil(requests / rate / SYNC) * SYNC


def reference_scenario(duration: float, policy: dict[str, Any] | None = None, seed: int = SEED):
    from tidal.config.loader import scenario_from_dict

    return scenario_from_dict({
        "name": "reference",
        "seed": seed,
        "duration": duration,
        "workload": {"kind": "constant", "rate": RATE},
        "service": {
            "service_time": {"distribution": "exponential", "mean": MEAN_SERVICE},
            "concurrency": CONCURRENCY,
            # queue_limit stays at its default (1,024 per replica): never reached at rho = 0.7.
        },
        "load_balancer": {"algorithm": "power_of_two"},
        "replicas": {"min": 1, "max": 200, "initial": REPLICAS},
        "control": {"sync_period": SYNC},
        "policy": policy or {"name": "target_utilization", "target": TARGET},
    })


def simpy_autoscale() -> dict[str, float]:
    """SimPy's controller configured like tidal's reference policy (no cold start)."""
    return {"sync_period": SYNC, "target": TARGET, "cold_start": 0.0, "min": 1, "max": 200, "tolerance": 0.0}


def diurnal_scenario(duration: float):
    """``examples/synthetic_diurnal.yaml`` at 500-1,500 req/s (1,000 req/s on average)."""
    from tidal.config.loader import scenario_from_dict

    return scenario_from_dict({
        "name": "diurnal-1000",
        "seed": SEED,
        "duration": duration,
        "workload": {"kind": "diurnal", "trough": 500, "peak": 1500, "period": "24h", "peak_at": "14h"},
        "service": {
            "service_time": {"distribution": "exponential", "mean": "50ms"},
            "concurrency": 4,
            "queue_limit": 256,
            "timeout": "10s",
            "cold_start": "30s",
        },
        "load_balancer": {"algorithm": "power_of_two"},
        "replicas": {"min": 2, "max": 200, "initial": 20},
        "control": {"sync_period": "15s"},
        "slo": {"latency": "250ms", "target": 0.99},
        "policy": {"name": "target_utilization", "target": 0.6, "stabilization": {"down_window": "5m"}},
    })


def tiny_scenario():
    from tidal.config.loader import scenario_from_dict

    return scenario_from_dict({
        "name": "tiny",
        "seed": SEED,
        "duration": 60,
        "workload": {"kind": "constant", "rate": 100},
        "service": {"service_time": {"distribution": "exponential", "mean": MEAN_SERVICE}, "concurrency": 4},
        "load_balancer": {"algorithm": "power_of_two"},
        "replicas": {"min": 1, "max": 10, "initial": 2},
        "control": {"sync_period": SYNC},
        "policy": {"name": "target_utilization", "target": 0.6},
    })


def request_stream(scenario, limit: int | None = None):
    """The exact (arrival times, service times) tidal serves for ``scenario`` (first ``limit``)."""
    import numpy as np

    from tidal.sim.simulator import Simulation

    times, service, got = [], [], 0
    for _, _, t, s, _ in Simulation(scenario).requests():
        times.append(t)
        service.append(s)
        got += len(t)
        if limit is not None and got >= limit:
            break
    times_a, service_a = np.concatenate(times), np.concatenate(service)
    if limit is not None:
        times_a, service_a = times_a[:limit], service_a[:limit]
    return times_a, service_a


# --------------------------------------------------------------------------- helpers


def pin_one_core(requested: int | None) -> int | None:
    """Pin this process (and the children it starts) to one CPU; returns it (None if unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = requested if requested is not None else allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def machine_info(cpu: int | None) -> dict[str, Any]:
    import numba
    import numpy
    import simpy

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "pinned_cpu": cpu,
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "simpy": simpy.__version__,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def run_child(mode: str, extra: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script in ``--child MODE`` in a fresh process.

    Returns the child's JSON result (which includes ``maxrss_bytes``, its peak RSS, see
    :func:`peak_rss_bytes`) plus ``process_s`` (wall time of the whole process, Python start-up
    included) and ``cpu_s`` (its user + system CPU time, from ``wait4``).
    """
    with tempfile.TemporaryDirectory(prefix="tidal-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--child-out", str(out), *extra]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"child {mode} {extra} failed with exit status {proc.returncode}")
        result = json.loads(out.read_text())
    result["process_s"] = wall
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since it was exec'd (``VmHWM``).

    Not ``ru_maxrss``: on Linux a child started with fork/vfork + exec inherits the parent's
    high-water mark at exec time, so ``wait4``/``RUSAGE_CHILDREN``/``RUSAGE_SELF`` report at least
    the benchmark parent's own RSS (hundreds of MiB here). ``VmHWM`` counts only the new image.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # an upper bound, see above


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:,.2f} M/s"
    if x >= 1e3:
        return f"{x / 1e3:,.1f} k/s"
    return f"{x:,.0f} /s"


def fmt_bytes(x: float) -> str:
    return f"{x / 2**20:,.0f} MiB"


def verdict(ok: bool | None) -> str:
    if ok is None:
        return "[dim]n/a[/dim]"
    return "[bold green]met[/bold green]" if ok else "[bold red]MISSED[/bold red]"


def agree_mark(ok: bool) -> str:
    return "[bold green]agree[/bold green]" if ok else "[bold red]DISAGREE[/bold red]"


# --------------------------------------------------------------------------- 1. throughput


def timed_run(scenario) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds) of one ``Simulation(scenario).run()``."""
    from tidal.sim.simulator import Simulation

    sim = Simulation(scenario)
    cpu = time.process_time()
    start = time.perf_counter()
    result = sim.run()
    wall = time.perf_counter() - start
    return result, wall, time.process_time() - cpu


def instrumented_run(scenario) -> dict[str, float]:
    """One run with the data-plane call and the arrival generator timed (instance-level wrappers;
    the overhead is a few perf_counter calls per 15 s tick)."""
    from tidal.sim.simulator import Simulation

    sim = Simulation(scenario)
    spent = {"kernel": 0.0, "arrivals": 0.0}
    serve = sim.state.serve
    requests = sim.requests

    def timed_serve(*args, **kwargs):
        t = time.perf_counter()
        serve(*args, **kwargs)
        spent["kernel"] += time.perf_counter() - t

    def timed_requests():
        chunks = requests()
        while True:
            t = time.perf_counter()
            try:
                item = next(chunks)
            except StopIteration:
                spent["arrivals"] += time.perf_counter() - t
                return
            spent["arrivals"] += time.perf_counter() - t
            yield item

    sim.state.serve = timed_serve
    sim.requests = timed_requests
    start = time.perf_counter()
    result = sim.run()
    total = time.perf_counter() - start
    return {
        "total_s": total,
        "kernel_s": spent["kernel"],
        "arrivals_s": spent["arrivals"],
        "control_s": total - spent["kernel"] - spent["arrivals"],
        "requests": result.summary.arrivals,
    }


def bench_throughput(size: dict[str, Any], console, profile: bool) -> dict[str, Any]:
    import statistics

    from rich.table import Table
    from simpy_model import run_simpy

    from tidal.sim.simulator import Simulation

    console.rule("[bold]1. Throughput: reference scenario, tidal vs SimPy")
    duration = _duration_for(size["tidal_requests"], RATE)
    scenario = reference_scenario(duration)

    # Warm-up: compile (or load from the numba cache) outside the timed runs.
    warm_start = time.perf_counter()
    Simulation(reference_scenario(2 * SYNC)).run()
    warm_s = time.perf_counter() - warm_start

    walls, cpus, summary = [], [], None
    for _ in range(size["repeats"]):
        result, wall, cpu = timed_run(scenario)
        walls.append(wall)
        cpus.append(cpu)
        summary = result.summary
    assert summary is not None
    wall = statistics.median(walls)
    cpu = statistics.median(cpus)
    tidal_rps = summary.arrivals / wall
    breakdown = instrumented_run(scenario)

    # SimPy on a prefix of the same request stream, same autoscaling rule.
    times, service = request_stream(scenario, size["simpy_requests"])
    simpy_cpu = time.process_time()
    simpy = run_simpy(times, service, REPLICAS, CONCURRENCY, "power_of_two", seed=0, autoscale=simpy_autoscale())
    simpy_cpu = time.process_time() - simpy_cpu
    simpy_rps = simpy["completed"] / simpy["wall_s"]
    ratio = tidal_rps / simpy_rps

    table = Table(title=f"Reference scenario: {REPLICAS} replicas, power of two choices, concurrency {CONCURRENCY}, "
                        f"exp {MEAN_SERVICE * 1e3:.0f} ms, Poisson {RATE:,.0f} req/s (rho {RHO}), "
                        f"target_utilization {TARGET} every {SYNC:g} s")
    for col, just in (("simulator", "left"), ("requests", "right"), ("simulated", "right"), ("wall", "right"),
                      ("CPU", "right"), ("requests / wall s", "right"), ("requests / CPU s", "right"),
                      ("target", "right"), ("", "left")):
        table.add_column(col, justify=just)
    spread = f" (runs: {', '.join(f'{w:.2f}' for w in walls)})" if len(walls) > 1 else ""
    table.add_row("tidal", f"{summary.arrivals:,}", f"{duration:,.0f} s", f"{wall:.2f} s{spread}", f"{cpu:.2f} s",
                  fmt_rate(tidal_rps), fmt_rate(summary.arrivals / cpu), f">= {fmt_rate(TARGET_TIDAL_RPS)}",
                  verdict(tidal_rps >= TARGET_TIDAL_RPS))
    table.add_row("SimPy", f"{simpy['completed']:,}", f"{simpy['end_time']:,.0f} s", f"{simpy['wall_s']:.2f} s",
                  f"{simpy_cpu:.2f} s", fmt_rate(simpy_rps), fmt_rate(simpy["completed"] / simpy_cpu), "", "")
    table.add_row("[bold]tidal / SimPy[/bold]", "", "", "", "", f"[bold]{ratio:,.0f}x[/bold]",
                  f"{(summary.arrivals / cpu) / (simpy['completed'] / simpy_cpu):,.0f}x", f">= {TARGET_RATIO:.0f}x",
                  verdict(ratio >= TARGET_RATIO))
    console.print(table)
    console.print(f"warm-up run (compile or numba-cache load + {2 * SYNC:g} s simulated): {warm_s:.2f} s, "
                  f"not counted. tidal summary: mean latency {summary.latency_mean * 1e3:.2f} ms, "
                  f"mean replicas {summary.mean_replicas:.1f}, drops {summary.drops}; SimPy mean latency "
                  f"{simpy['latencies'].mean() * 1e3:.2f} ms.")
    if summary.drops or not 0.8 * REPLICAS <= summary.mean_replicas <= 1.2 * REPLICAS:
        console.print("[bold red]warning: the reference run dropped requests or left ~100 replicas; the simulator "
                      "is not behaving as expected, so the timing above is not meaningful[/bold red]")

    parts = Table(title=f"Where tidal's wall time goes (one instrumented run, {breakdown['requests']:,} requests)")
    for col in ("component", "wall", "share", "ns / request"):
        parts.add_column(col, justify="left" if col == "component" else "right")
    n = breakdown["requests"]
    for label, key in (("data plane (state.serve -> compiled run_tick)", "kernel_s"),
                       ("arrival + service-time generation (Simulation.requests)", "arrivals_s"),
                       ("control plane (policy, scrape, tick table, replica pool)", "control_s"),
                       ("total Simulation.run()", "total_s")):
        parts.add_row(label, f"{breakdown[key]:.2f} s", f"{100 * breakdown[key] / breakdown['total_s']:.0f} %",
                      f"{1e9 * breakdown[key] / n:.0f}")
    console.print(parts)

    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        sim = Simulation(scenario)
        prof.enable()
        sim.run()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        console.print("[bold]cProfile (tottime), one run:[/bold]")
        console.print(buf.getvalue(), markup=False, highlight=False)

    return {
        "tidal": {"requests": summary.arrivals, "simulated_s": duration, "wall_s": wall, "wall_runs_s": walls,
                  "cpu_s": cpu, "cpu_runs_s": cpus, "drops": summary.drops,
                  "requests_per_s": tidal_rps, "warmup_s": warm_s, "latency_mean_s": summary.latency_mean,
                  "mean_replicas": summary.mean_replicas},
        "simpy": {"requests": simpy["completed"], "simulated_s": simpy["end_time"], "wall_s": simpy["wall_s"],
                  "cpu_s": simpy_cpu,
                  "requests_per_s": simpy_rps},
        "ratio": ratio,
        "breakdown": breakdown,
        "targets": {"tidal_rps": [TARGET_TIDAL_RPS, tidal_rps >= TARGET_TIDAL_RPS],
                    "ratio": [TARGET_RATIO, ratio >= TARGET_RATIO]},
    }


# --------------------------------------------------------------------------- 2. agreement


def batch_half_width(values, stat, batches: int, confidence: float) -> float:
    """Half-width of the ``confidence`` interval of ``stat`` by batch means (sectioning).

    ``values`` in completion order are cut into ``batches`` consecutive batches; the standard
    error of the whole-sample statistic is the spread of the per-batch statistics / sqrt(B).
    """
    import numpy as np
    from scipy import stats

    k = len(values) // batches
    per_batch = np.array([stat(values[i * k:(i + 1) * k]) for i in range(batches)])
    return float(stats.t.ppf(0.5 + confidence / 2, batches - 1) * per_batch.std(ddof=1) / math.sqrt(batches))


def run_simpy_logging_ready(*args, **kwargs) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """``run_simpy`` that also logs every change of the routable (ready) replica count.

    SimPy's ``replica_timeline`` is sampled right after each sync, before replicas started at
    that sync leave their (here zero-length) cold start, so it lags scale-ups by one period. To
    compare like with like, a recording subclass of the model's replica class notes each
    transition into and out of the ready state. Returns (result, [(time, delta), ...]).
    """
    import simpy_model as sm

    base = sm._Replica
    log: list[tuple[float, int]] = []

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self, env, index, concurrency, state):
            self._env = env
            super().__init__(env, index, concurrency, state)

        @property
        def state(self):
            return base.state.__get__(self)

        @state.setter
        def state(self, value):
            try:
                old = base.state.__get__(self)
            except AttributeError:
                old = None
            base.state.__set__(self, value)
            if value == "ready" and old != "ready":
                log.append((self._env.now, +1))
            elif old == "ready" and value != "ready":
                log.append((self._env.now, -1))

    sm._Replica = Recording
    try:
        out = sm.run_simpy(*args, **kwargs)
    finally:
        sm._Replica = base
    return out, log


def ready_step_stats(log: list[tuple[float, int]], duration: float) -> tuple[float, int, int, int]:
    """Time-weighted mean, min, max and number of changes of a ready count over [0, duration)."""
    changes: dict[float, int] = {}
    for t, d in log:
        changes[t] = changes.get(t, 0) + d
    times = sorted(t for t in changes if t < duration)
    level, area, prev = 0, 0.0, 0.0
    levels, n_changes = [], 0
    for t in times:
        area += level * (t - prev)
        if t > 0 and changes[t] != 0:
            n_changes += 1
        level += changes[t]
        levels.append(level)
        prev = t
    area += level * (duration - prev)
    return area / duration, min(levels), max(levels), n_changes


def bench_agreement(size: dict[str, Any], console) -> dict[str, Any]:
    import numpy as np
    from rich.table import Table
    from simpy_model import run_simpy

    from tidal.sim import histogram

    console.rule("[bold]2. Statistical agreement on identical requests (common random numbers)")
    duration = _duration_for(size["agreement_requests"], RATE)
    resolution = histogram.RESOLUTION  # bucket midpoint vs any value in the bucket
    out: dict[str, Any] = {"duration_s": duration, "batches": AGREEMENT_BATCHES,
                           "confidence": AGREEMENT_CONFIDENCE, "resolution": resolution}

    static = reference_scenario(duration, policy={"name": "static", "replicas": REPLICAS})
    times, service = request_stream(static)
    tidal_res, tidal_wall, _ = timed_run(static)
    simpy = run_simpy(times, service, REPLICAS, CONCURRENCY, "power_of_two", seed=0)
    lat = simpy["latencies"]
    s = tidal_res.summary
    if s.arrivals != len(times):  # common random numbers: both must see the very same requests
        raise RuntimeError(f"tidal served {s.arrivals} requests but its request stream has {len(times)}")
    if s.drops:
        console.print(f"[red]tidal dropped {s.drops} requests; SimPy's queues are unbounded[/red]")

    binned = np.zeros(histogram.N_BUCKETS, dtype=np.int64)
    np.add.at(binned, histogram.buckets_of(lat), 1)
    binned_q = histogram.quantiles(binned, (0.5, 0.95, 0.99))
    binned_vals = {"mean": histogram.mean(binned), "p50": binned_q[0], "p95": binned_q[1], "p99": binned_q[2]}

    metrics = {
        "mean": (s.latency_mean, float(lat.mean()), np.mean),
        "p50": (s.latency_p50, float(np.quantile(lat, 0.50)), lambda x: np.quantile(x, 0.50)),
        "p95": (s.latency_p95, float(np.quantile(lat, 0.95)), lambda x: np.quantile(x, 0.95)),
        "p99": (s.latency_p99, float(np.quantile(lat, 0.99)), lambda x: np.quantile(x, 0.99)),
    }
    table = Table(title=f"Static {REPLICAS} replicas, {s.arrivals:,} identical requests ({duration:g} s simulated); "
                        f"tolerance = sqrt(2) x {AGREEMENT_CONFIDENCE:.0%} batch-means CI half-width "
                        f"({AGREEMENT_BATCHES} batches) + {resolution:.2%} histogram resolution")
    for col in ("latency", "tidal", "SimPy", "SimPy binned as tidal", "tidal vs SimPy", "tolerance", ""):
        table.add_column(col, justify="left" if col in ("latency", "") else "right")
    all_ok = True
    rows = {}
    for name, (ours, ref, stat) in metrics.items():
        half = batch_half_width(lat, stat, AGREEMENT_BATCHES, AGREEMENT_CONFIDENCE)
        rel = ours / ref - 1.0
        tol = math.sqrt(2.0) * half / ref + resolution
        ok = abs(rel) <= tol
        all_ok &= ok
        rows[name] = {"tidal_s": ours, "simpy_s": ref, "simpy_binned_s": binned_vals[name], "rel_diff": rel,
                      "ci_half_width_s": half, "tolerance": tol, "agree": ok}
        table.add_row(name, f"{ours * 1e3:.2f} ms", f"{ref * 1e3:.2f} ms", f"{binned_vals[name] * 1e3:.2f} ms",
                      f"{rel:+.2%}", f"+-{tol:.2%}", agree_mark(ok))
    console.print(table)
    console.print(f"tidal {tidal_wall:.2f} s wall, SimPy {simpy['wall_s']:.2f} s wall; requests still in flight "
                  f"at the end: tidal {s.in_flight_at_end} (excluded), SimPy runs them to completion.")
    out["static"] = {"requests": s.arrivals, "metrics": rows, "agree": all_ok, "tidal_wall_s": tidal_wall,
                     "simpy_wall_s": simpy["wall_s"]}

    # Autoscaling on. tidal's policy averages utilization over `window`; SimPy's controller uses
    # the last sync period, so the window is set to one sync period to compare like with like.
    # Target 0.7 is the reference (the load is 0.7: the pool stays near 100); target 0.5 makes both
    # scale out to ~140 at the first sync, which exercises the scale-up path.
    t2 = Table(title=f"Autoscaling on (target_utilization, window {SYNC:g} s, every {SYNC:g} s, no cold start), "
                     f"same {s.arrivals:,} requests")
    t2.add_column("")
    cases = {}
    for target in AUTOSCALE_TARGETS:
        auto = reference_scenario(duration, policy={"name": "target_utilization", "target": target, "window": SYNC})
        auto_res, _, _ = timed_run(auto)
        auto_simpy, ready_log = run_simpy_logging_ready(times, service, REPLICAS, CONCURRENCY, "power_of_two",
                                                        seed=0, autoscale={**simpy_autoscale(), "target": target})
        ready = np.asarray(auto_res.ticks.column("ready"))
        a = auto_res.summary
        sp_mean, sp_min, sp_max, sp_changes = ready_step_stats(ready_log, duration)
        alat = auto_simpy["latencies"]
        cases[target] = {"tidal_mean_ready": float(ready.mean()), "simpy_mean_ready": sp_mean,
                         "tidal_min_max_ready": [int(ready.min()), int(ready.max())],
                         "simpy_min_max_ready": [sp_min, sp_max],
                         "tidal_scale_events": a.scale_events, "simpy_scale_events": sp_changes,
                         "tidal_latency_mean_s": a.latency_mean, "simpy_latency_mean_s": float(alat.mean()),
                         "tidal_latency_p99_s": a.latency_p99, "simpy_latency_p99_s": float(np.quantile(alat, 0.99))}
        t2.add_column(f"tidal, target {target:g}", justify="right")
        t2.add_column(f"SimPy, target {target:g}", justify="right")
    rows_auto = [
        ("mean ready replicas (time-weighted)", lambda c, w: f"{c[w + '_mean_ready']:.1f}"),
        ("min / max ready replicas", lambda c, w: "{} / {}".format(*c[w + "_min_max_ready"])),
        ("scale events", lambda c, w: f"{c[w + '_scale_events']}"),
        ("latency mean", lambda c, w: f"{c[w + '_latency_mean_s'] * 1e3:.2f} ms"),
        ("latency p99", lambda c, w: f"{c[w + '_latency_p99_s'] * 1e3:.2f} ms"),
    ]
    for label, cell in rows_auto:
        t2.add_row(label, *[cell(cases[target], who) for target in AUTOSCALE_TARGETS for who in ("tidal", "simpy")])
    console.print(t2)
    out["autoscale"] = {f"target_{target:g}": case for target, case in cases.items()}
    return out


# --------------------------------------------------------------------------- 3. long runs


def bench_long(size: dict[str, Any], console) -> dict[str, Any]:
    from rich.table import Table

    from tidal.sim.simulator import Simulation

    console.rule("[bold]3. Long runs: diurnal 500-1,500 req/s (1,000 req/s mean), one process each")
    # Make sure the on-disk numba cache is warm so the children measure simulation, not compilation.
    Simulation(diurnal_scenario(2 * SYNC)).run()
    table = Table(title="Diurnal 500-1,500 req/s, exp 50 ms, concurrency 4, target_utilization 0.6, sync 15 s, "
                        "cold start 30 s (numba cache warm)")
    for col in ("simulated", "requests", "Simulation.run()", "whole process", "process CPU", "requests / s", "peak RSS",
                "time target", "", "memory target", ""):
        table.add_column(col, justify="left" if col in ("simulated", "") else "right")
    rows = []
    for label, duration, target in size["long"]:
        r = run_child("long", ["--duration", str(duration)])
        mem_ok = r["maxrss_bytes"] < TARGET_MEM_BYTES
        time_ok = None if target is None else r["process_s"] <= target
        table.add_row(label, f"{r['requests']:,}", f"{r['run_s']:.2f} s", f"{r['process_s']:.2f} s",
                      f"{r['cpu_s']:.2f} s",
                      fmt_rate(r["requests"] / r["run_s"]), fmt_bytes(r["maxrss_bytes"]),
                      "-" if target is None else f"<= {target:g} s", verdict(time_ok),
                      f"< {fmt_bytes(TARGET_MEM_BYTES)}", verdict(mem_ok))
        rows.append({"label": label, "simulated_s": duration, **r, "time_target_s": target, "time_ok": time_ok,
                     "memory_ok": mem_ok})
    console.print(table)
    console.print("The time target is checked against the whole process (interpreter start, imports, loading "
                  "compiled code from the numba cache, the run); Simulation.run() is the simulation alone, after "
                  "a 30 s warm-up run that loads the compiled code; peak RSS is the child's own VmHWM.")
    for r in rows:
        console.print(f"  {r['label']}: mean replicas {r['mean_replicas']:.1f}, mean latency "
                      f"{r['latency_mean_s'] * 1e3:.1f} ms, p99 {r['latency_p99_s'] * 1e3:.1f} ms, "
                      f"drops {r['drops']}, scale events {r['scale_events']}; imports {r['import_s']:.2f} s, "
                      f"warm-up (numba cache load) {r['warmup_s']:.2f} s")
    return {"runs": rows}


def child_long(duration: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    from tidal.sim.simulator import Simulation

    scenario = diurnal_scenario(duration)
    imported = time.perf_counter() - t0
    start = time.perf_counter()
    Simulation(diurnal_scenario(2 * SYNC)).run()  # loads the compiled code from the numba cache
    warm_s = time.perf_counter() - start
    sim = Simulation(scenario)
    start = time.perf_counter()
    result = sim.run()
    run_s = time.perf_counter() - start
    s = result.summary
    return {"run_s": run_s, "import_s": imported, "warmup_s": warm_s, "requests": s.arrivals,
            "mean_replicas": s.mean_replicas,
            "latency_mean_s": s.latency_mean, "latency_p99_s": s.latency_p99, "drops": s.drops,
            "scale_events": s.scale_events}


# --------------------------------------------------------------------------- 4. startup


def bench_startup(size: dict[str, Any], console) -> dict[str, Any]:
    from rich.table import Table

    console.rule("[bold]4. Start-up: compiling vs loading compiled code from the numba cache")
    rows = []
    if size["cold_compile"]:
        cache = tempfile.mkdtemp(prefix="tidal-bench-numba-cache-")
        try:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            rows.append(("cold (empty NUMBA_CACHE_DIR: compile)", run_child("startup", [], env)))
            rows.append(("cached (same NUMBA_CACHE_DIR)", run_child("startup", [], env)))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    else:
        from tidal.sim.simulator import Simulation

        Simulation(tiny_scenario()).run()  # make sure the default cache is warm
        rows.append(("cached (default cache dir)", run_child("startup", [])))
        console.print("--quick skips the cold compile (about 15 s on its own); run --only startup for it.")
    table = Table(title="Tiny scenario (60 s at 100 req/s, 2 replicas) in a fresh process")
    for col in ("start", "whole process", "process CPU", "imports", "first Simulation.run()", "second run()",
                "peak RSS"):
        table.add_column(col, justify="left" if col == "start" else "right")
    for label, r in rows:
        table.add_row(label, f"{r['process_s']:.2f} s", f"{r['cpu_s']:.2f} s", f"{r['import_s']:.2f} s",
                      f"{r['first_run_s']:.2f} s",
                      f"{r['second_run_s'] * 1e3:.0f} ms", fmt_bytes(r["maxrss_bytes"]))
    console.print(table)
    return {"runs": [{"label": label, **r} for label, r in rows]}


def child_startup() -> dict[str, Any]:
    t0 = time.perf_counter()
    from tidal.sim.simulator import Simulation

    scenario = tiny_scenario()
    imported = time.perf_counter() - t0
    start = time.perf_counter()
    Simulation(scenario).run()
    first = time.perf_counter() - start
    start = time.perf_counter()
    Simulation(scenario).run()
    second = time.perf_counter() - start
    return {"import_s": imported, "first_run_s": first, "second_run_s": second}


# --------------------------------------------------------------------------- main


def summary_table(results: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title="Targets")
    for col in ("target", "measured", ""):
        table.add_column(col, justify="left" if col != "measured" else "right")
    if "throughput" in results:
        r = results["throughput"]
        table.add_row(f"tidal >= {fmt_rate(TARGET_TIDAL_RPS)} simulated requests per wall second",
                      fmt_rate(r["tidal"]["requests_per_s"]), verdict(r["targets"]["tidal_rps"][1]))
        table.add_row(f"tidal >= {TARGET_RATIO:.0f}x SimPy", f"{r['ratio']:,.0f}x", verdict(r["targets"]["ratio"][1]))
    if "agreement" in results:
        r = results["agreement"]["static"]
        worst = max(r["metrics"].values(), key=lambda m: abs(m["rel_diff"]) / m["tolerance"])
        table.add_row("latency mean/p50/p95/p99 agree with SimPy (static replicas)",
                      f"worst {worst['rel_diff']:+.2%} (tol +-{worst['tolerance']:.2%})",
                      "[bold green]met[/bold green]" if r["agree"] else "[bold red]MISSED[/bold red]")
    if "long" in results:
        for r in results["long"]["runs"]:
            if r["time_target_s"] is not None:
                table.add_row(f"{r['label']} <= {r['time_target_s']:g} s", f"{r['process_s']:.1f} s",
                              verdict(r["time_ok"]))
            table.add_row(f"{r['label']} memory < {fmt_bytes(TARGET_MEM_BYTES)}", fmt_bytes(r["maxrss_bytes"]),
                          verdict(r["memory_ok"]))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shrink everything (smoke check, < 60 s)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one throughput run")
    parser.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    parser.add_argument("--child", choices=("long", "startup"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = child_long(args.duration) if args.child == "long" else child_startup()
        result["maxrss_bytes"] = peak_rss_bytes()
        args.child_out.write_text(json.dumps(result))
        return 0

    selected = BENCHMARKS if args.only is None else tuple(x.strip() for x in args.only.split(","))
    unknown = set(selected) - set(BENCHMARKS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")

    from rich.console import Console
    from rich.table import Table

    # Wide enough for the tables when the output goes to a file or a pipe (rich assumes 80 columns).
    console = Console(width=None if sys.stdout.isatty() else 150)
    cpu = None if args.no_pin else pin_one_core(args.cpu)
    size = SIZES["quick" if args.quick else "full"]
    info = machine_info(cpu)
    head = Table.grid(padding=(0, 2))
    for key, value in info.items():
        head.add_row(f"[bold]{key}[/bold]", str(value))
    console.print(head)
    results: dict[str, Any] = {"machine": info, "mode": "quick" if args.quick else "full"}
    started = time.perf_counter()
    for name in BENCHMARKS:
        if name not in selected:
            continue
        t = time.perf_counter()
        if name == "throughput":
            results[name] = bench_throughput(size, console, args.profile)
        elif name == "agreement":
            results[name] = bench_agreement(size, console)
        elif name == "long":
            results[name] = bench_long(size, console)
        else:
            results[name] = bench_startup(size, console)
        results[name]["bench_wall_s"] = time.perf_counter() - t
    results["total_wall_s"] = time.perf_counter() - started
    if hasattr(os, "getloadavg"):
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    console.rule()
    summary_table(results, console)
    console.print(f"total benchmark wall time {results['total_wall_s']:.1f} s; load average at the end "
                  f"{results.get('loadavg_at_end')} (at the start {info['loadavg_at_start']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
        console.print(f"results written to {args.json}")
    if "agreement" in results and not results["agreement"]["static"]["agree"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
