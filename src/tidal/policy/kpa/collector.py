"""The KPA's metric collection: four bucket windows fed with per-second samples.

Upstream ``pkg/autoscaler/metrics/collector.go``: one collection per revision holds a stable and a
panic window for concurrency and for RPS. Every sample (the scraper's revision-wide estimate once
a second, plus what the activator reports) is recorded into the stable and the panic window of
its metric; values in the same 1 s bucket add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidal.core.types import MetricsWindow
from tidal.policy.kpa.buckets import TimedFloat64Buckets, new_buckets
from tidal.policy.kpa.resources import BUCKET_SIZE

METRICS = ("concurrency", "rps")


@dataclass(frozen=True, slots=True)
class StableAndPanic:
    stable: float
    panic: float


class MetricCollection:
    """Stable and panic windows of ``concurrency`` and ``rps`` for one revision.

    ``scrape_target`` is False when the target burst capacity is unlimited (-1): upstream then
    scrapes no pods, only the activator reports, and an empty window reads as zero instead of
    "no data".
    """

    def __init__(self, stable_window: float, panic_window: float, algorithm: str = "linear",
                 scrape_target: bool = True, granularity: float = BUCKET_SIZE) -> None:
        self.algorithm = algorithm
        self.scrape_target = scrape_target
        self.stable: dict[str, TimedFloat64Buckets] = {
            m: new_buckets(algorithm, stable_window, granularity) for m in METRICS}
        self.panic: dict[str, TimedFloat64Buckets] = {
            m: new_buckets(algorithm, panic_window, granularity) for m in METRICS}

    def record(self, metric: str, t: float, value: float) -> None:
        """Record one sample of ``metric`` (``concurrency`` or ``rps``) taken at ``t``."""
        self.stable[metric].record(t, value)
        self.panic[metric].record(t, value)

    def stable_and_panic(self, metric: str, now: float) -> StableAndPanic | None:
        """Window averages at ``now``, or ``None`` (upstream ``ErrNoData``) when the stable window
        holds nothing and pods are being scraped."""
        stable = self.stable[metric]
        if stable.is_empty(now) and self.scrape_target:
            return None
        return StableAndPanic(stable.window_average(now), self.panic[metric].window_average(now))

    def resize(self, stable_window: float, panic_window: float, wall_now: float) -> None:
        """Change the window lengths (upstream: a new ``window`` annotation)."""
        for m in METRICS:
            self.stable[m].resize_window(stable_window, wall_now)
            self.panic[m].resize_window(panic_window, wall_now)

    def state_dict(self) -> dict[str, Any]:
        return {"stable": {m: b.state_dict() for m, b in self.stable.items()},
                "panic": {m: b.state_dict() for m, b in self.panic.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for kind, windows in (("stable", self.stable), ("panic", self.panic)):
            for m in METRICS:
                saved = state[kind][m]
                if saved.get("algorithm") != windows[m].algorithm:
                    raise ValueError(f"saved {kind} {m} window uses {saved.get('algorithm')!r}, "
                                     f"config says {windows[m].algorithm!r}")
                windows[m].load_state_dict(saved)


def observed_stats(metrics: MetricsWindow, after: float | None, backfill: float) -> list[tuple[float, float, float]]:
    """``(time, concurrency, rps)`` of each scrape newer than ``after`` (the last ``backfill``
    seconds the first time) that upstream would have recorded.

    With ready pods the scraper records a stat every second, zeros included; with none it
    records nothing, and only the activator reports, which it does while requests arrive or wait.
    """
    # One second of slack against rounding; the ``t > after`` filter drops what was fed before.
    window = backfill if after is None else max(metrics.visible_until - after, 0.0) + 1.0
    series = {name: metrics.series(name, window) for name in ("concurrency", "rps", "ready_replicas")}
    by_time: dict[float, dict[str, float]] = {}
    for name, (times, values) in series.items():
        for t, v in zip(times.tolist(), values.tolist(), strict=True):
            if after is None or t > after:
                by_time.setdefault(t, {})[name] = v
    out = []
    for t in sorted(by_time):
        sample = by_time[t]
        concurrency = sample.get("concurrency", 0.0)
        rps = sample.get("rps", 0.0)
        if sample.get("ready_replicas") == 0 and concurrency == 0 and rps == 0:
            continue
        if "concurrency" not in sample and "rps" not in sample:
            continue
        out.append((t, concurrency, rps))
    return out
