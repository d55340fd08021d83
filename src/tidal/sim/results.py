"""Simulation results: the per-tick table, the summary, and saving them (Parquet + JSON)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tidal.sim import histogram

DROP_REASONS = ("queue_full", "timeout", "buffer_full", "crash")


class TickTable:
    """Column arrays, one row per tick (preallocated; no per-tick objects)."""

    COLUMNS = (
        "time", "desired", "spec", "ready", "starting", "draining", "arrivals", "completions", "drops",
        "slo_ok", "in_flight", "busy_seconds", "serving_seconds", "utilization", "replica_seconds", "latency_p50",
        "latency_p95", "latency_p99",
    )

    def __init__(self, n: int) -> None:
        ints = {"desired", "spec", "ready", "starting", "draining", "arrivals", "completions", "drops", "slo_ok", "in_flight"}
        for name in self.COLUMNS:
            setattr(self, name, np.zeros(n, dtype=np.int64 if name in ints else np.float64))
        self.drops_by_reason = np.zeros((n, len(DROP_REASONS)), dtype=np.int64)

    def head(self, n: int) -> TickTable:
        """A copy of the first ``n`` rows (a run stopped early)."""
        out = TickTable(n)
        for name in self.COLUMNS:
            setattr(out, name, getattr(self, name)[:n].copy())
        out.drops_by_reason = self.drops_by_reason[:n].copy()
        return out

    def to_arrow(self, cost_per_replica_hour: float) -> pa.Table:
        columns: dict[str, Any] = {name: getattr(self, name) for name in self.COLUMNS}
        for i, reason in enumerate(DROP_REASONS):
            columns[f"drops_{reason}"] = self.drops_by_reason[:, i]
        columns["cost"] = self.replica_seconds / 3600.0 * cost_per_replica_hour
        return pa.table(columns)


@dataclass(frozen=True)
class Summary:
    """Whole-run figures. Latencies in seconds; ``slo_attainment`` counts drops as misses."""

    policy: str
    seed: int
    duration_s: float
    arrivals: int
    completions: int
    drops: int
    drops_by_reason: dict[str, int]
    in_flight_at_end: int
    latency_mean: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    latency_p999: float
    wait_mean: float
    wait_p99: float
    slo_latency_s: float
    slo_target: float
    slo_attainment: float
    slo_met: bool
    drop_rate: float
    replica_hours: float
    cost: float
    scale_events: int
    scale_ups: int
    scale_downs: int
    decisions: int
    crashes: int
    mean_utilization: float
    mean_replicas: float
    max_replicas: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class SimulationResult:
    summary: Summary
    ticks: pa.Table
    latency_histogram: np.ndarray
    wait_histogram: np.ndarray
    scenario: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``ticks.parquet``, ``summary.json`` and ``latency_histogram.json`` atomically.

        Each file is written to a temporary name in ``out_dir`` and renamed, so a failure leaves
        no half-written file.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "ticks": out / "ticks.parquet",
            "summary": out / "summary.json",
            "histogram": out / "latency_histogram.json",
        }
        hist_doc = {
            "layout": f"log-linear, {histogram.SUB_BUCKETS} sub-buckets per power of two",
            "latency_min_s": histogram.LATENCY_MIN,
            "latency": _sparse(self.latency_histogram),
            "wait": _sparse(self.wait_histogram),
        }
        summary_doc = {"summary": self.summary.to_dict(), "scenario": self.scenario}
        _atomic_write(paths["ticks"], lambda f: pq.write_table(self.ticks, f))
        _atomic_write(paths["summary"], lambda f: f.write(json.dumps(summary_doc, indent=2, default=str).encode()))
        _atomic_write(paths["histogram"], lambda f: f.write(json.dumps(hist_doc).encode()))
        return paths


def _sparse(hist: np.ndarray) -> dict[str, dict[int, float]]:
    nonzero = np.flatnonzero(hist)
    return {
        "counts": {int(b): int(hist[b]) for b in nonzero},
        "values_s": {int(b): float(histogram.BUCKET_VALUES[b]) for b in nonzero},
    }


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summarize(scenario, policy, seed: int, tick: float, table: TickTable, hist_total: np.ndarray,
              hist_wait: np.ndarray, pool, decisions: int, end: float | None = None) -> SimulationResult:
    """Build the run's :class:`SimulationResult` from its tick table and histograms.

    ``end`` is the run's end when its last tick is cut short by the scenario's duration.
    """
    arrivals = int(table.arrivals.sum())
    completions = int(table.completions.sum())
    drops = int(table.drops.sum())
    by_reason = {reason: int(table.drops_by_reason[:, i].sum()) for i, reason in enumerate(DROP_REASONS)}
    p50, p95, p99, p999 = histogram.quantiles(hist_total, (0.5, 0.95, 0.99, 0.999))
    finished = completions + drops
    attainment = float(table.slo_ok.sum()) / finished if finished else math.nan
    replica_hours = float(table.replica_seconds.sum()) / 3600.0
    duration = float(len(table.time) * tick) if end is None else min(float(len(table.time) * tick), end)
    busy = float(table.busy_seconds.sum())
    serving = float(table.serving_seconds.sum())
    ups = sum(1 for e in pool.events if e.after > e.before)
    summary = Summary(
        policy=policy.describe(),
        seed=seed,
        duration_s=duration,
        arrivals=arrivals,
        completions=completions,
        drops=drops,
        drops_by_reason=by_reason,
        in_flight_at_end=int(table.in_flight[-1]),
        latency_mean=histogram.mean(hist_total),
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        latency_p999=p999,
        wait_mean=histogram.mean(hist_wait),
        wait_p99=histogram.quantiles(hist_wait, (0.99,))[0],
        slo_latency_s=scenario.slo.latency,
        slo_target=scenario.slo.target,
        slo_attainment=attainment,
        slo_met=bool(attainment >= scenario.slo.target) if finished else False,
        drop_rate=drops / arrivals if arrivals else 0.0,
        replica_hours=replica_hours,
        cost=replica_hours * scenario.cost.replica_hour,
        scale_events=len(pool.events),
        scale_ups=ups,
        scale_downs=len(pool.events) - ups,
        decisions=decisions,
        crashes=pool.crashes,
        mean_utilization=busy / (serving * scenario.service.concurrency) if serving > 0 else math.nan,
        mean_replicas=replica_hours * 3600.0 / duration if duration else 0.0,
        max_replicas=int(table.spec.max()) if len(table.spec) else 0,
    )
    ticks = table.to_arrow(scenario.cost.replica_hour)
    return SimulationResult(summary, ticks, hist_total.copy(), hist_wait.copy(), scenario.model_dump(mode="json"))
