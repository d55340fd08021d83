"""The comparison's figures, rendered to PNG bytes with matplotlib's Agg canvas.

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas directly, not through
``pyplot``: no global figure registry, no interactive backend, nothing to close, safe to call
from a library. Each policy keeps one colour across every figure.

Time-series figures show the first seed's run (with common random numbers every policy saw the
same requests in it); the latency CDF pools all seeds; the cost/SLO scatter shows means with
95 % confidence intervals when the comparison is replicated.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tidal.experiment.compare import Comparison
from tidal.experiment.summary import SummaryRow
from tidal.sim.histogram import BUCKET_VALUES

#: Above this many ticks a time series is averaged into bins: a line with 100k points is slow to
#: draw and unreadable anyway.
MAX_POINTS = 1500
WIDTH_IN = 10.0
DPI = 110
SLO_STYLE = {"color": "#b22222", "linestyle": "--", "linewidth": 1.0}


@dataclass(frozen=True)
class Plot:
    """One rendered figure: a file-friendly name, a title, a caption and the PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def all_plots(comparison: Comparison, rows: Sequence[SummaryRow]) -> list[Plot]:
    """Every figure of the report, in display order."""
    return [
        load_and_replicas(comparison),
        latency_over_time(comparison),
        latency_cdf(comparison),
        cost_vs_slo(comparison, rows),
    ]


def colors(n: int) -> list[str]:
    """``n`` distinct colours (tab10, then tab20 for larger comparisons)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [_hex(cmap(i % cmap.N)) for i in range(n)]


# --------------------------------------------------------------------------- figures


def load_and_replicas(comparison: Comparison) -> Plot:
    """Arrivals per second (identical for every policy) above each policy's ready replicas."""
    fig, (top, bottom) = _figure(2, height=6.0, height_ratios=(1, 1.5))
    first = comparison.first(comparison.arms[0].label)
    minutes, rate = _binned(first, first.ticks["arrivals"] / first.tick_lengths())
    top.plot(minutes, rate, color="#555555", linewidth=1.0)
    top.set_ylabel("arrivals / s")
    top.set_title("load (identical for every policy)", loc="left", fontsize=10)
    for arm, color in zip(comparison.arms, colors(len(comparison.arms)), strict=True):
        run = comparison.first(arm.label)
        t, ready = _binned(run, run.ticks["ready"].astype(float))
        bottom.step(t, ready, where="post", color=color, linewidth=1.5, label=arm.label)
    bottom.set_ylabel("ready replicas")
    bottom.set_xlabel(_time_label(first))
    bottom.set_title("ready replicas", loc="left", fontsize=10)
    bottom.set_ylim(bottom=0)
    _legend(bottom)
    return _render(fig, "load_replicas", "Load and ready replicas",
                   f"Arrival rate and ready replicas over time (seed {comparison.seeds[0]}).")


#: The per-tick latency percentiles plotted over time: the summary table's p50, p95 and p99.
LATENCY_PANELS = (("latency_p50", "p50"), ("latency_p95", "p95"), ("latency_p99", "p99"))


def latency_over_time(comparison: Comparison) -> Plot:
    """Per-tick p50, p95 and p99 latency of each policy (one panel each), with the SLO threshold."""
    fig, axes = _figure(len(LATENCY_PANELS), height=8.4)
    slo = comparison.scenario.slo.latency
    series = {arm.label: comparison.first(arm.label) for arm in comparison.arms}
    peak = max((np.nanmax(r.ticks["latency_p99"]) for r in series.values()
                if np.isfinite(r.ticks["latency_p99"]).any()), default=slo)
    # One unit for every panel, chosen by the largest value (p99), so the panels read alike.
    scale, unit = (1000.0, "ms") if max(peak, slo) < 1.0 else (1.0, "s")
    for ax, (column, title) in zip(axes, LATENCY_PANELS, strict=True):
        for (label, run), color in zip(series.items(), colors(len(series)), strict=True):
            t, y = _binned(run, run.ticks[column] * scale)
            ax.plot(t, y, color=color, linewidth=1.2, label=label)
        ax.axhline(slo * scale, **SLO_STYLE, label="SLO")
        ax.set_ylabel(f"{title} latency ({unit})")
        ax.set_title(f"{title} latency per tick", loc="left", fontsize=10)
        _maybe_log(ax, np.concatenate([r.ticks[column] for r in series.values()]) * scale)
    axes[-1].set_xlabel(_time_label(next(iter(series.values()))))
    _legend(axes[0])
    return _render(fig, "latency_time", "Latency over time",
                   f"Median, 95th- and 99th-percentile latency of the requests completed in each tick "
                   f"(seed {comparison.seeds[0]}); dashed: the SLO threshold.")


def latency_cdf(comparison: Comparison) -> Plot:
    """Latency distribution of completed requests: CDF and tail (1 - CDF), all seeds pooled."""
    fig, (cdf_ax, tail_ax) = _figure(1, ncols=2, height=4.2)
    slo = comparison.scenario.slo.latency
    x_lo, x_hi = slo, slo
    for arm, color in zip(comparison.arms, colors(len(comparison.arms)), strict=True):
        hist = np.sum([r.latency_histogram for r in comparison.runs[arm.label]], axis=0)
        total = hist.sum()
        if total == 0:
            continue
        nonzero = np.flatnonzero(hist)
        lo, hi = nonzero[0], nonzero[-1] + 1
        x = np.maximum(BUCKET_VALUES[lo:hi], BUCKET_VALUES[1])  # the underflow bucket sits at 0
        cdf = np.cumsum(hist[lo:hi]) / total
        # Show from the 0.1 % quantile: the first microseconds of a CDF carry no information.
        x_lo = min(x_lo, x[int(np.searchsorted(cdf, 1e-3))])
        x_hi = max(x_hi, x[-1])
        cdf_ax.step(x, cdf, where="post", color=color, linewidth=1.5, label=arm.label)
        tail = np.clip(1.0 - cdf, 1.0 / (10 * total), None)
        tail_ax.step(x, tail, where="post", color=color, linewidth=1.5, label=arm.label)
    for ax in (cdf_ax, tail_ax):
        ax.set_xscale("log")
        ax.set_xlim(x_lo / 1.5, x_hi * 1.5)
        ax.axvline(slo, **SLO_STYLE, label="SLO")
        ax.set_xlabel("latency (s)")
    cdf_ax.set_ylabel("fraction of requests ≤ latency")
    cdf_ax.set_ylim(0, 1.02)
    cdf_ax.set_title("CDF", loc="left", fontsize=10)
    tail_ax.set_yscale("log")
    tail_ax.set_ylabel("fraction of requests > latency")
    tail_ax.set_title("tail (1 − CDF)", loc="left", fontsize=10)
    _legend(cdf_ax)
    seeds = "all seeds pooled" if comparison.replications > 1 else f"seed {comparison.seeds[0]}"
    return _render(fig, "latency_cdf", "Latency distribution",
                   f"Latency of completed requests ({seeds}; dropped requests are not included); "
                   "dashed: the SLO threshold.")


def cost_vs_slo(comparison: Comparison, rows: Sequence[SummaryRow]) -> Plot:
    """Mean cost against SLO attainment per policy (95 % CI error bars when replicated)."""
    fig, (ax,) = _figure(1, height=4.8, width=8.0)
    target = comparison.scenario.slo.target * 100.0
    for row, color in zip(rows, colors(len(rows)), strict=True):
        cost, attain = row.values["cost"], row.values["slo_attainment"]
        if not (math.isfinite(cost.mean) and math.isfinite(attain.mean)):
            continue
        xerr = cost.half_width if cost.has_interval else None
        yerr = attain.half_width * 100.0 if attain.has_interval else None
        ax.errorbar(cost.mean, attain.mean * 100.0, xerr=xerr, yerr=yerr, fmt="o", color=color,
                    markersize=8, capsize=4, elinewidth=1.2, label=row.label)
        ax.annotate(row.label, (cost.mean, attain.mean * 100.0), textcoords="offset points", xytext=(7, 6),
                    fontsize=9, color=color)
    ax.axhline(target, color="#2e7d32", linestyle=":", linewidth=1.0, label=f"SLO target {target:g} %")
    ax.set_xlabel(f"cost (per scenario run, {comparison.scenario.cost.replica_hour:g} per replica-hour)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_title("better: up and to the left", loc="left", fontsize=10, color="#555555")
    ax.margins(x=0.15, y=0.15)
    _legend(ax)
    interval = " with 95 % confidence intervals" if comparison.replications > 1 else ""
    return _render(fig, "cost_slo", "Cost vs SLO attainment",
                   f"Mean cost and SLO attainment per policy{interval} "
                   f"(over {comparison.replications} seed{'s' if comparison.replications > 1 else ''}).")


# --------------------------------------------------------------------------- helpers


def _figure(nrows: int, *, ncols: int = 1, height: float, width: float = WIDTH_IN, height_ratios=None):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=(ncols == 1 and nrows > 1), squeeze=False,
                        gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    flat = list(axes.flat)
    for ax in flat:
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, flat


def _render(fig, name: str, title: str, caption: str) -> Plot:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # Fixed metadata: the same comparison renders to the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return Plot(name=name, title=title, caption=caption, png=buf.getvalue())


def _binned(run, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time (in the run's display unit) and values, averaged into bins above MAX_POINTS."""
    divisor = _time_divisor(run)
    t = run.ticks["time"] / divisor
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n <= MAX_POINTS:
        return t, values
    size = math.ceil(n / MAX_POINTS)
    pad = (-n) % size
    padded = np.concatenate([values, np.full(pad, np.nan)]).reshape(-1, size)
    finite = np.isfinite(padded)
    counts = finite.sum(axis=1)
    sums = np.where(finite, padded, 0.0).sum(axis=1)
    means = np.divide(sums, counts, out=np.full(len(sums), np.nan), where=counts > 0)
    return t[::size], means


def _time_divisor(run) -> float:
    duration = run.summary.duration_s
    return 3600.0 if duration > 6 * 3600 else 60.0 if duration > 600 else 1.0


def _time_label(run) -> str:
    return {3600.0: "time (hours)", 60.0: "time (minutes)", 1.0: "time (seconds)"}[_time_divisor(run)]


def _maybe_log(ax, values: np.ndarray) -> None:
    """Log scale when the values span more than a decade and a half (latency under overload does)."""
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) and finite.max() / finite.min() > 30.0:
        ax.set_yscale("log")


def _legend(ax) -> None:
    ax.legend(loc="best", fontsize=8, frameon=False)


def _hex(rgba) -> str:
    r, g, b = (int(round(c * 255)) for c in rgba[:3])
    return f"#{r:02x}{g:02x}{b:02x}"
