"""The comparison's summary table: one row per policy, a mean (± 95 % CI) per figure, best marked.

Shared by the terminal table, ``summary.csv`` and the HTML report so they always agree.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tidal.experiment.compare import Comparison
from tidal.experiment.stats import Estimate, estimate

Kind = Literal["latency", "fraction", "count", "amount"]


@dataclass(frozen=True, slots=True)
class Metric:
    """A summary column: the :class:`~tidal.sim.Summary` field it reads and which way is better."""

    key: str
    column: str
    title: str
    kind: Kind
    better: Literal["lower", "higher"] | None


#: The compared figures. Latency, drops, replica-hours, cost and scale events (churn) are better
#: low; SLO attainment is better high. ``arrivals`` is there to show common random numbers at
#: work (equal for every policy) and is never ranked.
METRICS: tuple[Metric, ...] = (
    Metric("latency_p50", "latency_p50_s", "p50", "latency", "lower"),
    Metric("latency_p95", "latency_p95_s", "p95", "latency", "lower"),
    Metric("latency_p99", "latency_p99_s", "p99", "latency", "lower"),
    Metric("slo_attainment", "slo_attainment", "SLO attainment", "fraction", "higher"),
    Metric("drops", "drops", "drops", "count", "lower"),
    Metric("replica_hours", "replica_hours", "replica-hours", "amount", "lower"),
    Metric("cost", "cost", "cost", "amount", "lower"),
    Metric("scale_events", "scale_events", "scale events", "count", "lower"),
)
ARRIVALS = Metric("arrivals", "arrivals", "requests", "count", None)


@dataclass(frozen=True)
class SummaryRow:
    """One policy's figures: ``values[metric.key]`` is an :class:`Estimate` over the seeds."""

    label: str
    name: str
    description: str
    runs: int
    values: dict[str, Estimate]
    slo_met: int
    best: tuple[str, ...]

    def is_best(self, metric: Metric) -> bool:
        return metric.key in self.best


def summary_rows(comparison: Comparison, confidence: float = 0.95) -> list[SummaryRow]:
    """Rows in arm order with every figure averaged over seeds and the winners marked."""
    partial = []
    for arm in comparison.arms:
        records = comparison.runs[arm.label]
        values = {
            m.key: estimate((getattr(r.summary, m.key) for r in records), confidence)
            for m in (*METRICS, ARRIVALS)
        }
        partial.append((arm, records, values))
    winners = {m.key: _winners([values[m.key].mean for _, _, values in partial], m) for m in METRICS}
    return [
        SummaryRow(
            label=arm.label,
            name=arm.name,
            description=records[0].summary.policy,
            runs=len(records),
            values=values,
            slo_met=sum(1 for r in records if r.summary.slo_met),
            best=tuple(m.key for m in METRICS if i in winners[m.key]),
        )
        for i, (arm, records, values) in enumerate(partial)
    ]


def _winners(means: Sequence[float], metric: Metric) -> set[int]:
    """Indices of the rows with the best mean; none when every row ties (nothing to choose)."""
    finite = [(i, v) for i, v in enumerate(means) if math.isfinite(v)]
    if not finite or metric.better is None:
        return set()
    best = min(v for _, v in finite) if metric.better == "lower" else max(v for _, v in finite)
    tol = 1e-12 * max(1.0, abs(best))
    winners = {i for i, v in finite if abs(v - best) <= tol}
    return set() if len(winners) == len(means) else winners


# --------------------------------------------------------------------------- formatting


@dataclass(frozen=True, slots=True)
class Format:
    """How one column is printed: values are multiplied by ``scale`` and shown in ``unit``."""

    scale: float
    unit: str
    decimals: int


def column_format(metric: Metric, values: Sequence[Estimate]) -> Format:
    """One unit and precision for a whole column, so rows compare at a glance."""
    means = [v.mean for v in values if math.isfinite(v.mean)]
    if metric.kind == "latency":
        return Format(1000.0, "ms", 1) if all(abs(m) < 1.0 for m in means) else Format(1.0, "s", 3)
    if metric.kind == "fraction":
        return Format(100.0, "%", 2)
    if metric.kind == "count":
        whole = all(float(m).is_integer() for m in means) and not any(v.has_interval for v in values)
        return Format(1.0, "", 0 if whole else 1)
    nonzero = [abs(m) for m in means if m != 0]
    return Format(1.0, "", _decimals(min(nonzero)) if nonzero else 2)


def format_estimate(metric: Metric, value: Estimate, fmt: Format | None = None, unit: bool = True) -> str:
    """``mean ± half-width`` (the mean alone for one run) in the column's unit.

    ``fmt`` defaults to the format this value alone would get; pass the column's
    (:func:`column_format`) to line a table up, and ``unit=False`` when the header carries it.
    """
    if not math.isfinite(value.mean):
        return "-"
    fmt = fmt or column_format(metric, [value])
    text = f"{value.mean * fmt.scale:,.{fmt.decimals}f}"
    if value.has_interval:
        text += f" ± {value.half_width * fmt.scale:,.{fmt.decimals}f}"
    return f"{text} {fmt.unit}" if unit and fmt.unit else text


def _decimals(x: float) -> int:
    """Two decimals, or three significant digits for small amounts (a few cents)."""
    if x == 0 or abs(x) >= 1:
        return 2
    return min(8, 2 - math.floor(math.log10(abs(x))))


def header(metric: Metric, slo_latency_s: float | None = None, fmt: Format | None = None, short: bool = False) -> str:
    """Column title (``SLO ≤ 500 ms`` for attainment), with ``fmt``'s unit in parentheses."""
    if metric.key == "slo_attainment" and slo_latency_s is not None:
        threshold = f"{slo_latency_s * 1000:g} ms" if slo_latency_s < 1 else f"{slo_latency_s:g} s"
        title = f"SLO ≤ {threshold}"
    elif metric.kind == "latency" and not short:
        title = f"latency {metric.title}"
    else:
        title = metric.title
    return f"{title} ({fmt.unit})" if fmt is not None and fmt.unit else title


def formatted_table(rows: Sequence[SummaryRow], slo_latency_s: float | None = None,
                    short: bool = False) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Headers and cells ``(text, is_best)`` of the summary table, one unit per column."""
    formats = {m.key: column_format(m, [r.values[m.key] for r in rows]) for m in METRICS}
    headers = [header(m, slo_latency_s, formats[m.key], short) for m in METRICS]
    cells = [
        [(format_estimate(m, row.values[m.key], formats[m.key], unit=False), row.is_best(m)) for m in METRICS]
        for row in rows
    ]
    return headers, cells


# --------------------------------------------------------------------------- CSV


def summary_csv(rows: Sequence[SummaryRow], replicated: bool) -> str:
    """``summary.csv``: raw means (seconds, fractions), ``_ci95`` half-widths when replicated,
    and a ``best`` column listing (``;``-separated) the columns each policy wins."""
    columns = ["policy", "name", "runs", ARRIVALS.column]
    for m in METRICS:
        columns.append(m.column)
        if replicated:
            columns.append(f"{m.column}_ci95")
    columns += ["slo_met_runs", "best"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        line: list[object] = [row.label, row.name, row.runs, _raw(row.values[ARRIVALS.key].mean)]
        for m in METRICS:
            line.append(_raw(row.values[m.key].mean))
            if replicated:
                line.append(_raw(row.values[m.key].half_width))
        line += [row.slo_met, ";".join(m.column for m in METRICS if row.is_best(m))]
        writer.writerow(line)
    return buf.getvalue()


def _raw(x: float) -> str:
    if not math.isfinite(x):
        return ""
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(float(x))
