"""Quality benchmark: every registered policy, tuned the same way, on three real traces.

For each shipped trace (``benchmarks/quality_scenarios/*.yaml``: NASA HTTP, Azure Functions,
Azure LLM inference; a 60 s cold start each) and each policy, the policy's main knob is tuned for
the cheapest configuration that meets the scenario's SLO (>= 99 % of requests within the latency
bound, drops counted as misses). The tuned policies are then compared on replica-hours, cost,
SLO attainment and drops, next to the tuned Kubernetes HPA.

Tuning is the same for everyone: a bisection over one knob with the same number of simulations
per policy and trace (``--evals``, default 5). Each step keeps the half towards the cheap end when
the midpoint met the SLO and the half towards the safe end when it did not; the answer is the
cheapest *measured* configuration that met the SLO, so a non-monotone response can cost
optimality, never honesty. Every simulation of one trace uses the scenario's seed: all policies
and knob values serve identical requests (common random numbers).

Each trace has a warm-up that is simulated but not scored (one season of the forecasters' model:
24 h for NASA, 2 h for Functions; 5 min for the LLM trace, which starts from an empty system).
The table shows the scored window; the whole run's SLO attainment is printed next to it.

Run from the repository root::

    .venv/bin/python benchmarks/bench_quality.py                  # everything (~10-15 min on 2 cores)
    .venv/bin/python benchmarks/bench_quality.py --quick          # smoke check: short windows, 2 evals
    .venv/bin/python benchmarks/bench_quality.py --traces nasa --policies predictive --evals 4
    .venv/bin/python benchmarks/bench_quality.py --json quality.json --ticks results/quality-ticks
    .venv/bin/python benchmarks/bench_quality.py --traces nasa,functions --policies hpa --oracle

``--oracle`` adds a clairvoyant reference row: it sizes each decision for the busiest work of the
ticks until the next decision's replicas could arrive, read from the run's future (common random
numbers make that work the same for every policy). No controller can do that; its saving over the
tuned HPA is an upper bound on what any causal policy can save with the same utilization knob.

Scenario settings, tuning procedure and results: ``docs/quality.md``.
"""

from __future__ import annotations

import os

# One thread per worker process: the pool provides the parallelism. Set before numpy / numba load.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "quality_scenarios"

#: The issue's target: the best tidal policy meets the SLO with at least this fraction fewer
#: replica-hours than the tuned HPA, on the diurnal traces.
TARGET_SAVING = 0.25
DEFAULT_EVALS = 5
QUICK_EVALS = 2

# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Facts:
    """What a policy block may be told about a scenario: the deployment, not the traffic."""

    concurrency: int
    min_replicas: int
    max_replicas: int
    slo_latency: float
    slo_target: float
    sync_period: float


@dataclass(frozen=True)
class Trace:
    """One benchmark scenario and the few per-trace choices that policies are given.

    ``service_cv`` / ``service_distribution`` describe the service time's shape as a load test of
    the model server would measure it: the model-based policies cannot read it from aggregate
    metrics (they still estimate the mean online). ``forecaster`` is the predictive policies'
    model of the traffic. ``warmup`` is simulated but not scored; ``quick`` and ``quick_warmup``
    replace the workload window and the warm-up under ``--quick``.
    """

    key: str
    title: str
    file: str
    warmup: float
    diurnal: bool
    service_cv: float
    service_distribution: Literal["lognormal", "gamma"]
    forecaster: dict[str, Any]
    quick: dict[str, Any]
    quick_warmup: float


TRACES: dict[str, Trace] = {
    t.key: t
    for t in (
        # A daily season at 5-minute buckets: the day's shape, not its minute-scale noise.
        Trace("nasa", "NASA HTTP, 3 days", "nasa_http.yaml", warmup=86400.0, diurnal=True,
              service_cv=1.0, service_distribution="lognormal",
              forecaster={"kind": "holt_winters", "season": "24h", "step": "5m", "alpha": 0.3, "gamma": 0.3},
              quick={"start": "0s", "end": "8h"}, quick_warmup=7200.0),
        # An hourly season at 1-minute buckets: the timer-triggered functions repeat every hour.
        Trace("functions", "Azure Functions, 1 day", "azure_functions.yaml", warmup=7200.0, diurnal=True,
              service_cv=1.5, service_distribution="lognormal",
              forecaster={"kind": "holt_winters", "season": "1h", "step": "1m", "alpha": 0.3, "gamma": 0.3},
              quick={"start": "10m", "end": "4h"}, quick_warmup=3600.0),
        # One hour: no season to learn. Service time 0.3 s (lognormal, CV 0.5) + 20 ms per generated
        # token has CV 0.72 over the trace's token counts.
        Trace("llm", "Azure LLM inference, 1 hour", "azure_llm.yaml", warmup=300.0, diurnal=False,
              service_cv=0.72, service_distribution="gamma",
              forecaster={"kind": "holt", "step": "1m"},
              quick={"end": "20m"}, quick_warmup=300.0),
    )
}

# --------------------------------------------------------------------------- knobs

Block = Callable[[float, Facts, Trace], dict[str, Any]]

#: Reactive policies without a scale-down delay of their own run behind the HPA's default
#: 5-minute scale-down window: with a 60 s cold start, shedding replicas in a one-minute lull
#: and asking for them again costs a minute of overload every time (measured: queueing flaps
#: and misses the SLO at any headroom without it).
SLOW_DOWN = {"stabilization": {"down_window": "5m"}}


@dataclass(frozen=True)
class Knob:
    """The one parameter tuned for a policy: its range and which end is cheaper.

    ``block(value, facts, trace)`` is the policy block with that value; everything else stays at
    the policy's defaults, apart from what the deployment dictates (bounds, slots, the SLO). A
    range given per slot (``per_slot``) is multiplied by the replica's concurrency.
    """

    label: str
    lo: float
    hi: float
    cheaper: Literal["high", "low"]
    block: Block
    integer: bool = False
    per_slot: bool = False

    def bounds(self, facts: Facts) -> tuple[float, float]:
        scale = facts.concurrency if self.per_slot else 1
        return self.lo * scale, self.hi * scale


def _static(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "static", "replicas": int(v)}


def _hpa(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    target = {"type": "Utilization", "averageUtilization": int(v)}
    return {"name": "hpa", "minReplicas": f.min_replicas, "maxReplicas": f.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]}


def _kpa(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    # KPA aims at target x target_utilization_percentage (70 %) in-flight requests per pod.
    return {"name": "kpa", "target": round(v, 3), "min_scale": f.min_replicas, "max_scale": f.max_replicas}


def _keda(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    trigger = {"type": "tidal-metric", "metadata": {"metric": "concurrency", "targetValue": round(v, 3)}}
    return {"name": "keda", "minReplicaCount": f.min_replicas, "maxReplicaCount": f.max_replicas,
            "triggers": [trigger]}


def _ray_serve(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "ray_serve", "target_ongoing_requests": round(v, 3), "min_replicas": f.min_replicas,
            "max_replicas": f.max_replicas}


def _target_utilization(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "target_utilization", "target": round(v, 4), **SLOW_DOWN}


def _predictive_params(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"forecaster": dict(t.forecaster), "target_utilization": round(v, 4), "sync_period_hint": f.sync_period}


def _predictive(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    # No stabilization: sizing for the peak forecast over the cold start is its own scale-down rule.
    return {"name": "predictive", **_predictive_params(v, f, t)}


def _hybrid(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    # The reactive correction sits 0.1 above the floor's target, as docs/policies/predictive.md advises.
    return {"name": "hybrid", "predictive": _predictive_params(v, f, t),
            "reactive": {"target": round(min(1.0, v + 0.1), 4)}}


def _service_model(f: Facts, t: Trace) -> dict[str, Any]:
    return {"concurrency": f.concurrency, "service_cv": t.service_cv, "service_distribution": t.service_distribution}


def _queueing(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "queueing", "slo": {"latency": f.slo_latency, "percentile": f.slo_target},
            "headroom": round(v, 4), **_service_model(f, t), **SLOW_DOWN}


def _pid(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    # track_replicas feeds the count the stabilization window keeps back into the integral.
    return {"name": "pid", "signal": "utilization", "setpoint": round(v, 4), "track_replicas": True, **SLOW_DOWN}


def _adaptive(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "adaptive", "target": round(v, 4), **SLOW_DOWN}


def _mpc(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": "mpc", "target_utilization": round(v, 4), "min_replicas": f.min_replicas,
            "max_replicas": f.max_replicas, **_service_model(f, t), **SLOW_DOWN}


KNOBS: dict[str, Knob] = {
    "static": Knob("replicas", 1, 120, "low", _static, integer=True),
    "hpa": Knob("averageUtilization", 20, 95, "high", _hpa, integer=True),
    "kpa": Knob("target", 0.1, 2.0, "high", _kpa, per_slot=True),
    "keda": Knob("targetValue", 0.1, 1.5, "high", _keda, per_slot=True),
    "ray_serve": Knob("target_ongoing_requests", 0.1, 1.5, "high", _ray_serve, per_slot=True),
    "target_utilization": Knob("target", 0.3, 0.95, "high", _target_utilization),
    "predictive": Knob("target_utilization", 0.3, 1.0, "high", _predictive),
    "hybrid": Knob("predictive.target_utilization", 0.3, 1.0, "high", _hybrid),
    "queueing": Knob("headroom", 1.0, 2.0, "low", _queueing),
    "pid": Knob("setpoint", 0.3, 0.95, "high", _pid),
    "adaptive": Knob("target", 0.3, 0.95, "high", _adaptive),
    "mpc": Knob("target_utilization", 0.3, 1.0, "high", _mpc),
}

#: Reimplementations of other systems' autoscalers, and the fixed fleet: the baselines. The rest
#: are tidal's own policies, the candidates for "the best tidal policy".
BASELINES = ("static", "hpa", "kpa", "keda", "ray_serve")


def _oracle(v: float, f: Facts, t: Trace) -> dict[str, Any]:
    return {"name": ORACLE, "utilization": round(v, 4)}


#: Not a policy: a clairvoyant reference that reads the run's future work (see :class:`Oracle`).
#: Run only with ``--oracle``; never a candidate for "the best tidal policy".
ORACLE = "oracle"
ORACLE_KNOB = Knob("utilization", 0.7, 1.2, "high", _oracle)

# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Trial:
    """One simulation of one knob value: the scored window's figures and the whole run's."""

    value: float
    block: dict[str, Any]
    summary: dict[str, Any]
    full: dict[str, Any]
    cpu_s: float

    @property
    def meets(self) -> bool:
        return self.summary["slo_attainment"] >= self.summary["slo_target"] - 1e-12


@dataclass
class Bisection:
    """Bisection of one knob towards the cheapest value that still meets the SLO.

    The interval runs from the safe (expensive) end to the cheap end. Each trial evaluates the
    midpoint: one that meets the SLO moves the safe end to it, one that misses moves the cheap
    end. An integer knob evaluates rounded midpoints and stops early when no new one is left.
    """

    knob: Knob
    budget: int
    safe: float
    cheap: float
    trials: list[Trial] = field(default_factory=list)

    @classmethod
    def start(cls, knob: Knob, facts: Facts, budget: int) -> Bisection:
        lo, hi = knob.bounds(facts)
        return cls(knob, budget, lo, hi) if knob.cheaper == "high" else cls(knob, budget, hi, lo)

    def next_value(self) -> float | None:
        if len(self.trials) >= self.budget:
            return None
        mid = (self.safe + self.cheap) / 2
        if self.knob.integer:
            mid = float(round(mid))
            if any(t.value == mid for t in self.trials):
                return None
        return mid

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        if trial.meets:
            self.safe = trial.value
        else:
            self.cheap = trial.value

    def best(self) -> Trial | None:
        """The cheapest trial that met the SLO, else the one closest to meeting it."""
        feasible = [t for t in self.trials if t.meets]
        if feasible:
            return min(feasible, key=lambda t: (t.summary["replica_hours"], -t.summary["slo_attainment"]))
        if not self.trials:
            return None
        return max(self.trials, key=lambda t: (t.summary["slo_attainment"], -t.summary["replica_hours"]))


# --------------------------------------------------------------------------- one simulation (workers)


@lru_cache(maxsize=4)
def _work_per_tick(scenario_json: str) -> tuple[float, Any]:
    """(tick length, slot-seconds of service in each tick) of a run that never queues.

    Arrivals and service times do not depend on the policy (common random numbers), so a fixed
    fleet at the replica maximum measures the work every policy's run has to serve.
    """
    import tidal.policy  # noqa: F401  registers the built-in policies
    from tidal.policy import build_policy
    from tidal.sim import Simulation

    scenario = _scenario(scenario_json)
    block = {"name": "static", "replicas": scenario.replicas.max}
    ticks = Simulation(scenario, build_policy(block, scenario.replicas.min, scenario.replicas.max)).run().ticks
    times = ticks.column("time").to_numpy()
    return float(times[1] - times[0]), ticks.column("busy_seconds").to_numpy()


def _oracle_policy(scenario_json: str, utilization: float) -> Any:
    """The clairvoyant reference for ``scenario_json`` (built in the worker, which runs it)."""
    from tidal.core.types import Decision
    from tidal.policy.base import Policy

    scenario = _scenario(scenario_json)
    tick, work = _work_per_tick(scenario_json)
    slots = scenario.service.concurrency
    # A replica asked for now serves after the actuation delay and the cold start; one removed now
    # is gone now. So a decision must cover every tick until the next decision's replicas arrive.
    lead = math.ceil((scenario.service.cold_start.mean + scenario.control.actuation_delay) / tick - 1e-9)

    class Oracle(Policy):
        """Sizes for the busiest of the next ``lead`` ticks' known work at ``utilization``: an
        upper bound on what any causal policy can save, not something a controller can run."""

        def decide(self, obs: Any) -> Decision:
            i = max(0, int(round(obs.time / tick)))
            ahead = work[i:i + lead + 1]
            if not len(ahead):
                return Decision(obs.replicas, reason="past the end of the run")
            need = float(ahead.max()) / (tick * slots * utilization)
            return Decision(math.ceil(need - 1e-9), reason=f"knows the next {lead} ticks")

    return Oracle()


@lru_cache(maxsize=8)
def _scenario(text: str) -> Any:
    """The validated scenario of a JSON-encoded scenario dict (cached per worker process)."""
    from tidal.config.loader import scenario_from_dict

    return scenario_from_dict(json.loads(text))


def run_trial(scenario_json: str, block: dict[str, Any], warmup: float,
              ticks_path: str | None) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Simulate one policy block on one scenario.

    Returns the scored window's figures (ticks from ``warmup`` on), the whole run's summary, and
    the CPU seconds the run took.
    """
    import tidal.policy  # noqa: F401  registers the built-in policies
    from tidal.policy import build_policy
    from tidal.policy.behaviors import Bounded
    from tidal.sim import Simulation

    start = time.process_time()
    scenario = _scenario(scenario_json)
    if block["name"] == ORACLE:
        policy = Bounded(_oracle_policy(scenario_json, block["utilization"]), scenario.replicas.min,
                         scenario.replicas.max)
    else:
        policy = build_policy(block, scenario.replicas.min, scenario.replicas.max)
    result = Simulation(scenario, policy).run()
    if ticks_path is not None:
        import pyarrow.parquet as pq

        Path(ticks_path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(result.ticks, ticks_path)
    scored = window_summary(result.ticks, warmup, scenario.slo.target, scenario.cost.replica_hour,
                            result.summary.duration_s)
    return scored, result.summary.to_dict(), time.process_time() - start


def window_summary(ticks: Any, warmup: float, slo_target: float, price: float, end: float) -> dict[str, Any]:
    """Figures over the ticks that start at or after ``warmup``, defined as the simulator's summary
    defines them: attainment is requests finished within the SLO over requests finished (drops
    count as misses); replica-hours are billed from a replica's creation (cold start included).
    ``end`` is the run's end (its last tick may be shorter than the others)."""
    import numpy as np

    def col(name: str) -> Any:
        return ticks.column(name).to_numpy()

    times = col("time")
    keep = times >= warmup - 1e-9
    finished = float(col("completions")[keep].sum() + col("drops")[keep].sum())
    replica_hours = float(col("replica_seconds")[keep].sum()) / 3600.0
    hours = (end - float(times[keep][0])) / 3600.0 if keep.any() else 0.0
    spec = col("spec")[keep]
    return {
        "hours": hours,
        "arrivals": int(col("arrivals")[keep].sum()),
        "drops": int(col("drops")[keep].sum()),
        "slo_attainment": float(col("slo_ok")[keep].sum()) / finished if finished else math.nan,
        "slo_target": slo_target,
        "replica_hours": replica_hours,
        "cost": replica_hours * price,
        "mean_replicas": replica_hours / hours if hours else math.nan,
        "scale_events": int(np.count_nonzero(np.diff(spec))),
    }


# --------------------------------------------------------------------------- driving the searches


@dataclass
class Search:
    """The tuning of one policy on one trace."""

    trace: Trace
    policy: str
    scenario_json: str
    facts: Facts
    warmup: float
    bisection: Bisection
    weight: float  # relative cost of one run, to start the long ones first


def load_case(trace: Trace, quick: bool) -> tuple[str, Facts, dict[str, Any]]:
    """The scenario of ``trace`` as portable JSON (trace path made absolute), its facts, and the dict."""
    from tidal.config import load_scenario
    from tidal.config.loader import scenario_from_dict
    from tidal.experiment.compare import portable_scenario
    from tidal.policy import effective_control

    data = portable_scenario(load_scenario(SCENARIO_DIR / trace.file))
    if quick:
        data["workload"].update(trace.quick)
    scenario = scenario_from_dict(data)
    data = portable_scenario(scenario)
    facts = Facts(scenario.service.concurrency, scenario.replicas.min, scenario.replicas.max,
                  scenario.slo.latency, scenario.slo.target,
                  effective_control(scenario.control, scenario.policy).sync)
    return json.dumps(data, sort_keys=True), facts, data


def _ticks_per_policy(data: dict[str, Any], policies: list[str]) -> dict[str, float]:
    """Ticks of one run of each policy (at its own cadence): the control plane dominates a run's cost."""
    from tidal.config.loader import scenario_from_dict
    from tidal.policy import effective_control
    from tidal.workload import build_workload

    scenario = scenario_from_dict(data)
    duration = scenario.duration or build_workload(scenario.workload, scenario.seed).duration or 0.0
    ticks = {}
    for policy in policies:
        control = effective_control(scenario.control, policy)  # the oracle has no cadence: 15 s
        ticks[policy] = duration / min(control.sync, control.scrape)
    return ticks


def _label(value: float, knob: Knob) -> str:
    return f"{int(value)}" if knob.integer else f"{value:.4g}"


def drive(searches: list[Search], jobs: int, ticks_dir: Path | None, log: Callable[[str], None]) -> None:
    """Run every search to its budget, ``jobs`` simulations at a time, in spawned processes.

    The next point of a search is submitted as soon as its previous one returns, so the pool stays
    busy across searches; the longest scenarios start first.
    """
    pending: dict[Future, tuple[Search, float, dict[str, Any]]] = {}

    def submit(pool: ProcessPoolExecutor, search: Search) -> None:
        value = search.bisection.next_value()
        if value is None:
            return
        block = search.bisection.knob.block(value, search.facts, search.trace)
        ticks = None
        if ticks_dir is not None:
            name = f"{search.policy}@{_label(value, search.bisection.knob)}.parquet"
            ticks = str(ticks_dir / search.trace.key / name)
        pending[pool.submit(run_trial, search.scenario_json, block, search.warmup, ticks)] = (search, value, block)

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for search in sorted(searches, key=lambda s: -s.weight):
            submit(pool, search)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                search, value, block = pending.pop(future)
                summary, full, cpu = future.result()
                trial = Trial(value, block, summary, full, cpu)
                search.bisection.record(trial)
                knob = search.bisection.knob
                log(f"  {search.trace.key:9s} {search.policy:18s} {knob.label} = {_label(value, knob):>6s}: "
                    f"replica-h {summary['replica_hours']:8.2f}  SLO {100 * summary['slo_attainment']:7.3f} %"
                    f"{'' if trial.meets else ' (miss)'}  [{cpu:.1f} s CPU]")
                submit(pool, search)


# --------------------------------------------------------------------------- report


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def report(searches: list[Search], traces: list[Trace], policies: list[str]) -> tuple[list[str], dict[str, Any]]:
    """One Markdown table per trace (cheapest first, SLO misses last) plus the target check, and the
    same results as a JSON-able dict."""
    lines: list[str] = []
    results: dict[str, Any] = {}
    by_key = {(s.trace.key, s.policy): s for s in searches}
    for trace in traces:
        rows = [(p, by_key[(trace.key, p)], by_key[(trace.key, p)].bisection.best()) for p in policies]
        hpa = next((b for p, _, b in rows if p == "hpa" and b is not None and b.meets), None)
        warmup = rows[0][1].warmup
        lines += [f"### {trace.title}", "",
                  f"Scored from {_duration(warmup)} on; the warm-up before it is simulated, not scored.", "",
                  "| policy | tuned knob | replica-hours | cost | SLO attainment | drops | vs tuned HPA "
                  "| whole run: SLO |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        ranked = sorted(rows, key=lambda r: (r[2] is None or not r[2].meets,
                                             r[2].summary["replica_hours"] if r[2] else math.inf))
        trace_results: dict[str, Any] = {}
        for policy, search, best in ranked:
            knob = search.bisection.knob
            if best is None:
                lines.append(f"| {policy} | — | — | — | — | — | — | — |")
                continue
            s = best.summary
            vs = "—"
            if hpa is not None and best.meets:
                vs = f"{100 * (s['replica_hours'] / hpa.summary['replica_hours'] - 1):+.1f} %"
            missed = "" if best.meets else " ✗"
            lines.append(f"| {policy} | {knob.label} = {_label(best.value, knob)} | {s['replica_hours']:.1f} | "
                         f"{s['cost']:.2f} | {_pct(s['slo_attainment'])}{missed} | {s['drops']:,} | {vs} | "
                         f"{_pct(best.full['slo_attainment'])} |")
            trace_results[policy] = {
                "knob": knob.label, "value": best.value, "meets_slo": best.meets, "block": best.block,
                "scored": s, "whole_run": best.full,
                "trials": [{"value": t.value, "meets_slo": t.meets, "replica_hours": t.summary["replica_hours"],
                            "slo_attainment": t.summary["slo_attainment"], "cpu_s": t.cpu_s}
                           for t in search.bisection.trials],
            }
        lines.append("")
        verdict: dict[str, Any] = {"diurnal": trace.diurnal, "warmup_s": warmup}
        own = [(p, b) for p, _, b in rows if p not in (*BASELINES, ORACLE) and b is not None and b.meets]
        if own and hpa is not None:
            policy, b = min(own, key=lambda pb: pb[1].summary["replica_hours"])
            saving = 1 - b.summary["replica_hours"] / hpa.summary["replica_hours"]
            verdict.update(best_tidal=policy, saving_vs_hpa=saving)
            goal = ""
            if trace.diurnal:
                met = "met" if saving >= TARGET_SAVING - 1e-12 else "NOT met"
                goal = f" (target: at least {100 * TARGET_SAVING:.0f} % fewer — {met})"
            # A best tidal policy can still cost more than the HPA: say so rather than "-x % fewer".
            amount = f"{100 * abs(saving):.1f} % {'fewer' if saving >= 0 else 'more'}"
            lines.append(f"Best tidal policy meeting the SLO: **{policy}**, {amount} replica-hours "
                         f"than the tuned HPA{goal}.")
        elif hpa is None:
            lines.append("The HPA met the SLO at no evaluated target: no comparison.")
        elif any(p not in (*BASELINES, ORACLE) for p in policies):
            lines.append("No tidal policy met the SLO.")
        lines.append("")
        results[trace.key] = {"policies": trace_results, "verdict": verdict}
    return lines, results


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows and 2 evaluations: a smoke check")
    parser.add_argument("--traces", default=",".join(TRACES), help=f"subset of {','.join(TRACES)}")
    parser.add_argument("--policies", default=",".join(KNOBS), help="subset of the policies (hpa is always run)")
    parser.add_argument("--evals", type=int, default=None,
                        help=f"simulations per policy and trace (default {DEFAULT_EVALS}; {QUICK_EVALS} with --quick)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: the CPUs available)")
    parser.add_argument("--json", type=Path, default=None, help="also write every trial and the tables as JSON")
    parser.add_argument("--ticks", type=Path, default=None, help="save every run's tick table (Parquet) under this folder")
    parser.add_argument("--oracle", action="store_true",
                        help="also tune a clairvoyant reference that knows the next cold start's work "
                             "(an upper bound on any causal policy's savings; not a policy)")
    args = parser.parse_args(argv)

    traces = [TRACES[k] for k in _names(args.traces, TRACES, "--traces")]
    policies = _names(args.policies, KNOBS, "--policies")
    if "hpa" not in policies:
        policies.insert(0, "hpa")  # the reference every row is compared with
    if args.oracle:
        policies.append(ORACLE)
    evals = args.evals or (QUICK_EVALS if args.quick else DEFAULT_EVALS)
    if evals < 1:
        raise SystemExit("--evals: must be >= 1")
    jobs = args.jobs or _cpus()

    wall0 = time.time()
    load0 = _load()
    searches, scenarios = [], {}
    for trace in traces:
        scenario_json, facts, data = load_case(trace, args.quick)
        scenarios[trace.key] = data
        warmup = trace.quick_warmup if args.quick else trace.warmup
        weights = _ticks_per_policy(data, policies)
        for policy in policies:
            searches.append(Search(trace, policy, scenario_json, facts, warmup,
                                   Bisection.start(KNOBS.get(policy, ORACLE_KNOB), facts, evals), weights[policy]))
    print(f"quality benchmark: {len(traces)} traces x {len(policies)} policies x {evals} simulations, "
          f"{jobs} workers{' (quick)' if args.quick else ''}; load average {load0}", flush=True)
    drive(searches, jobs, args.ticks, lambda line: print(line, flush=True))
    wall = time.time() - wall0
    lines, results = report(searches, traces, policies)
    cpu = sum(t.cpu_s for s in searches for t in s.bisection.trials)
    runs = sum(len(s.bisection.trials) for s in searches)
    footer = (f"{runs} simulations, {cpu:.0f} CPU-s in the workers, {wall:.0f} s wall with {jobs} workers; "
              f"load average {load0} at the start, {_load()} at the end; "
              f"{platform.python_implementation()} {platform.python_version()}")
    print()
    print("\n".join(lines))
    print(footer)
    if args.json is not None:
        doc = {"quick": args.quick, "evals": evals, "jobs": jobs, "wall_s": wall, "cpu_s": cpu, "runs": runs,
               "scenarios": scenarios, "results": results, "markdown": "\n".join(lines), "footer": footer}
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


def _names(text: str, known: dict[str, Any], option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
