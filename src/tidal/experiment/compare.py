"""Run several policies on one scenario with common random numbers, in parallel.

The simulator's request stream (arrival times, service times, keys) depends only on the scenario
and the seed, never on the policy (:meth:`tidal.sim.Simulation.requests`). Running every policy
with the same seeds therefore replays identical requests — common random numbers — so the
differences between policies are differences of policy, not of luck, and a few replications
give tight comparisons.

Each (policy, seed) run is independent: with ``jobs > 1`` they run in a spawn-context process
pool. Workers get the scenario as a plain dict and rebuild it, so nothing unpicklable crosses the
process boundary, and results are identical to a sequential run (same seeds, same code path).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tidal.config.loader import scenario_from_dict
from tidal.config.scenario import Scenario
from tidal.core.errors import TidalInputError
from tidal.experiment.arms import Arm
from tidal.experiment.backends import terminate_pool
from tidal.policy import available_policies, build_policy
from tidal.sim import Simulation
from tidal.sim.results import Summary

#: Per-tick columns kept from each policy's first-seed run (what the report plots). The rest of the
#: tick table, and the other seeds' tables, are dropped in the worker: a day at one-second ticks
#: is megabytes per run, and a comparison may hold hundreds of runs.
TICK_COLUMNS = ("time", "arrivals", "ready", "desired", "latency_p50", "latency_p95", "latency_p99", "cost")

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class RunRecord:
    """What the comparison keeps of one simulation run.

    ``ticks`` holds :data:`TICK_COLUMNS` for the first seed's run of each policy and is empty for
    the other seeds; the summary and the latency histogram are kept for every run.
    """

    label: str
    seed: int
    summary: Summary
    tick_s: float  # the run's tick (its last one may be shorter: see ``tick_lengths``)
    ticks: Mapping[str, np.ndarray] = field(repr=False)
    latency_histogram: np.ndarray = field(repr=False)

    def tick_lengths(self) -> np.ndarray:
        """Seconds each kept tick covers: ``tick_s``, except a last tick cut short by the duration."""
        return np.diff(np.append(self.ticks["time"], self.summary.duration_s))


@dataclass(frozen=True, eq=False)
class Comparison:
    """All runs of a comparison: ``runs[label]`` holds one record per seed, in seed order."""

    scenario: Scenario
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    runs: Mapping[str, tuple[RunRecord, ...]]

    @property
    def replications(self) -> int:
        return len(self.seeds)

    def first(self, label: str) -> RunRecord:
        """The run of ``label`` with the first seed (the one time-series plots show)."""
        return self.runs[label][0]


@dataclass(frozen=True)
class _Task:
    """One run, in picklable form: a scenario dict, a policy block, a seed."""

    label: str
    seed: int
    scenario: dict[str, Any]
    block: dict[str, Any]
    modules: tuple[str, ...]
    keep_ticks: bool = True


@dataclass(frozen=True)
class _Failure:
    """A :class:`TidalInputError` raised in a worker (rebuilt in the parent: its two-argument
    constructor does not survive pickling as an exception)."""

    where: str
    problem: str


def seeds_for(scenario: Scenario, replications: int = 1, seed: int | None = None) -> tuple[int, ...]:
    """``seed, seed + 1, ..., seed + replications - 1`` (``seed`` defaults to the scenario's)."""
    if replications < 1:
        raise TidalInputError("--replications", f"must be >= 1, got {replications}")
    first = scenario.seed if seed is None else seed
    if first < 0:
        raise TidalInputError("--seed", f"must be >= 0, got {first}")
    return tuple(range(first, first + replications))


def default_jobs() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def run_comparison(
    scenario: Scenario,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Simulate every arm with every seed; ``progress(done, total)`` after each run.

    ``jobs`` (default: :func:`default_jobs`) bounds the worker processes; ``jobs=1`` runs in
    this process. A :class:`TidalInputError` in any run stops the rest and is re-raised.
    """
    if not arms:
        raise TidalInputError("--policies", "give at least one policy")
    if jobs is not None and jobs < 1:
        raise TidalInputError("--jobs", f"must be >= 1, got {jobs}")
    scenario_dict = portable_scenario(scenario)
    tasks = [
        _Task(arm.label, int(seed), scenario_dict, dict(arm.block), _policy_modules(arm.name), keep_ticks=i == 0)
        for arm in arms
        for i, seed in enumerate(seeds)
    ]
    workers = min(jobs or default_jobs(), len(tasks))
    records = _run_sequential(tasks, progress) if workers <= 1 else _run_parallel(tasks, workers, progress)
    runs = {arm.label: tuple(r for r in records if r.label == arm.label) for arm in arms}
    return Comparison(scenario, tuple(arms), tuple(int(s) for s in seeds), runs)


def portable_scenario(scenario: Scenario) -> dict[str, Any]:
    """The scenario as a JSON-safe dict that rebuilds the same scenario in any process.

    A relative trace path is made absolute, so a worker with another working directory (or a
    later rerun) reads the same file.
    """
    data = scenario.model_dump(mode="json")
    workload = data.get("workload", {})
    if workload.get("kind") == "trace":
        workload["path"] = str(Path(workload["path"]).resolve())
    return data


def run_task(task: _Task) -> RunRecord | _Failure:
    """Run one simulation (in a worker or in-process: the same code either way)."""
    for module in task.modules:
        importlib.import_module(module)
    try:
        scenario = scenario_from_dict({**task.scenario, "policy": task.block})
        policy = build_policy(task.block, scenario.replicas.min, scenario.replicas.max)
        sim = Simulation(scenario, policy, seed=task.seed)
        result = sim.run()
    except TidalInputError as exc:
        return _Failure(exc.where, exc.problem)
    ticks = {name: result.ticks.column(name).to_numpy() for name in TICK_COLUMNS} if task.keep_ticks else {}
    return RunRecord(
        label=task.label,
        seed=task.seed,
        summary=result.summary,
        tick_s=sim.tick,
        ticks=ticks,
        latency_histogram=result.latency_histogram,
    )


def _policy_modules(name: str) -> tuple[str, ...]:
    """Module that registers ``name``, for a spawned worker to import (plugins included)."""
    module = available_policies()[name].factory.__module__
    return () if module in ("__main__", "__mp_main__") else (module,)


def _unwrap(outcome: RunRecord | _Failure) -> RunRecord:
    if isinstance(outcome, _Failure):
        raise TidalInputError(outcome.where, outcome.problem)
    return outcome


def _run_sequential(tasks: list[_Task], progress: Progress | None) -> list[RunRecord]:
    records = []
    for i, task in enumerate(tasks):
        records.append(_unwrap(run_task(task)))
        if progress is not None:
            progress(i + 1, len(tasks))
    return records


def _run_parallel(tasks: list[_Task], workers: int, progress: Progress | None) -> list[RunRecord]:
    # Spawn, not fork: the parent may hold numba's threads and open files, and spawn behaves the
    # same on every platform. Workers ignore Ctrl-C; the parent handles it and stops them.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_sigint)
    results: list[RunRecord | None] = [None] * len(tasks)
    try:
        pending: dict[Future, int] = {pool.submit(run_task, task): i for i, task in enumerate(tasks)}
        done_count = 0
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = _unwrap(future.result())
                done_count += 1
                if progress is not None:
                    progress(done_count, len(tasks))
    except BaseException:
        terminate_pool(pool)
        raise
    pool.shutdown(wait=True)
    return [r for r in results if r is not None]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


