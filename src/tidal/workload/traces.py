"""Trace replay: request-level traces (one row per request) and rate-level traces (counts per
interval), with presets for the traces shipped in ``data/traces``.

Trace time is seconds from the first row. ``start``/``end`` cut a window in trace time and the
window's start becomes simulation time 0; ``time_scale`` then multiplies times (0.5 = twice as
fast) and ``rate_scale`` multiplies the number of requests.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from tidal.config.scenario import TraceWorkload
from tidal.core.errors import TidalInputError
from tidal.workload.base import Arrivals, check_window, random_keys, unkeyed_arrivals
from tidal.workload.sampling import scaled_counts, sorted_uniform_in_bins
from tidal.workload.tracefiles import RateTable, RequestTable, TraceColumns, load_rates, load_requests

logger = logging.getLogger(__name__)

#: Column layouts of the shipped traces (see data/traces/*/PROVENANCE.md).
PRESETS: dict[str, TraceColumns] = {
    "azure_llm": TraceColumns(
        format="request", timestamp_column="TIMESTAMP", timestamp_unit="datetime", size_column="GeneratedTokens"
    ),
    "mooncake": TraceColumns(
        format="request",
        timestamp_column="timestamp",
        timestamp_unit="ms",
        size_column="output_length",
        key_column="hash_ids",
    ),
    "nasa_http": TraceColumns(format="rate", count_column="requests", interval=60.0),
    # 1000 functions x 1440 per-minute columns; the rows (functions) are summed.
    "azure_functions": TraceColumns(format="rate", count_column="minute_*", interval=60.0),
}

_FIELDS = ("timestamp_column", "timestamp_unit", "size_column", "key_column", "count_column", "interval")


def resolve_columns(spec: TraceWorkload) -> TraceColumns:
    """The columns to read: the preset's, overridden by every field the spec sets."""
    preset = PRESETS.get(spec.preset) if spec.preset else None
    base = preset or TraceColumns(format=spec.format)
    if preset is not None and spec.preset == "nasa_http" and "per_second" in spec.path.name:
        base = dataclasses.replace(base, interval=1.0)  # the per-second count list
    overrides: dict[str, Any] = {f: getattr(spec, f) for f in _FIELDS if getattr(spec, f) is not None}
    if "format" in spec.model_fields_set or preset is None:
        overrides["format"] = spec.format
    return dataclasses.replace(base, **overrides)


def build_trace(spec: TraceWorkload, seed: int) -> RequestTraceWorkload | RateTraceWorkload:
    """The replay workload for a trace spec."""
    path = Path(spec.path)
    columns = resolve_columns(spec)
    if columns.format == "rate":
        return RateTraceWorkload(load_rates(path, columns), spec, seed)
    return RequestTraceWorkload(load_requests(path, columns), spec, seed)


def _window_start(spec: TraceWorkload, span_end: float, what: str) -> float:
    start = spec.start or 0.0
    if start >= span_end:
        raise TidalInputError("workload.start", f"{start:g} s is past the end of the trace ({what} at {span_end:g} s)")
    return start


def _read_only(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.flags.writeable = False


class RequestTraceWorkload:
    """Replays a request-level trace: every request's time, size and key.

    ``rate_scale`` s gives each request floor(s) or floor(s)+1 copies (a Bernoulli on the
    fraction; s < 1 thins). The first copy keeps the request's time; extra copies are uniform in
    the gap to the next request, so the stream stays sorted, and keep the size and key. All of
    this is drawn once at construction, so ``arrivals`` is a slice of fixed arrays.
    """

    def __init__(self, table: RequestTable, spec: TraceWorkload, seed: int) -> None:
        if table.times.size == 0:
            raise TidalInputError(str(spec.path), "the trace has no requests")
        rng = np.random.default_rng(seed)
        lo, hi, times, duration = _request_window(table, spec)
        self.duration: float | None = duration
        sizes = table.sizes[lo:hi] if table.sizes is not None else np.zeros(times.size)
        keys = table.keys[lo:hi] if table.keys is not None else None
        if spec.rate_scale != 1.0:
            times, sizes, keys = _replicate(rng, times, sizes, keys, spec.rate_scale)
        if keys is None:
            keys = random_keys(rng, times.size)
        self._times = np.ascontiguousarray(times)
        self._sizes = np.ascontiguousarray(sizes, np.float64)
        self._keys = np.ascontiguousarray(keys, np.int64)
        _read_only(self._times, self._sizes, self._keys)
        self._per_second = np.bincount(self._times.astype(np.int64), minlength=math.ceil(self.duration))
        self.info: dict[str, Any] = {
            "path": str(spec.path),
            "format": "request",
            "rows": table.rows,
            "requests": int(self._times.size),
            "duration": self.duration,
            "time_scale": spec.time_scale,
            "rate_scale": spec.rate_scale,
        }
        logger.debug("request trace %s: %d requests over %.1f s", spec.path, self._times.size, self.duration)

    def arrivals(self, start: float, end: float) -> Arrivals:
        """The requests in ``[start, end)`` (read-only views)."""
        check_window(start, end)
        a = int(np.searchsorted(self._times, start, side="left"))
        b = int(np.searchsorted(self._times, end, side="left"))
        return Arrivals(self._times[a:b], self._sizes[a:b], self._keys[a:b])

    def rate(self, t: np.ndarray) -> np.ndarray:
        """Arrivals per second in the 1-second bin holding ``t`` (0 outside the trace)."""
        t = np.asarray(t, np.float64)
        assert self.duration is not None
        inside = (t >= 0) & (t < self.duration)
        bins = np.where(inside, t, 0.0).astype(np.int64)
        bins = np.minimum(bins, self._per_second.size - 1)
        return np.where(inside, self._per_second[bins], 0.0).astype(np.float64)


def _request_window(table: RequestTable, spec: TraceWorkload) -> tuple[int, int, np.ndarray, float]:
    """Rows ``lo:hi`` inside the spec's window, their simulation times, and the duration."""
    last = float(table.times[-1])
    w0 = _window_start(spec, float(np.nextafter(last, np.inf)), "last request")
    lo = int(np.searchsorted(table.times, w0, side="left"))
    hi = table.times.size if spec.end is None else int(np.searchsorted(table.times, spec.end, side="left"))
    times = (table.times[lo:hi] - w0) * spec.time_scale
    if spec.end is not None and spec.end <= last:
        duration = (spec.end - w0) * spec.time_scale
        keep = int(np.searchsorted(times, duration, side="left"))  # guard against rounding
        return lo, lo + keep, times[:keep], duration
    # The trace ends with its last request: include it in [0, duration).
    return lo, hi, times, float(np.nextafter(times[-1], np.inf))


def _replicate(
    rng: np.random.Generator, times: np.ndarray, sizes: np.ndarray, keys: np.ndarray | None, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Each request ``floor(scale)`` or ``floor(scale)+1`` times (see RequestTraceWorkload)."""
    copies = scaled_counts(rng, np.ones(times.size), scale)
    total = int(copies.sum())
    source = np.repeat(np.arange(times.size), copies)
    # Bin i is the gap [t_i, t_{i+1}); the last request has no gap, its copies coincide with it.
    gap_end = np.append(times[1:], times[-1:]) if times.size else times
    extras = sorted_uniform_in_bins(rng, times, gap_end, np.maximum(copies - 1, 0))
    is_first = np.zeros(total, bool)
    is_first[(np.cumsum(copies) - copies)[copies > 0]] = True
    out = np.empty(total, np.float64)
    out[is_first] = times[copies > 0]
    out[~is_first] = extras  # each gap's extras follow its original, already in order
    return out, sizes[source], None if keys is None else keys[source]


class RateTraceWorkload:
    """Replays a rate-level trace: interval k holds ``count_k`` requests.

    With ``rate_scale`` s an interval gets floor(count*s) + Bernoulli(frac) arrivals, uniform
    within it. Intervals are drawn as the windows reach them; arrivals of an interval that
    straddles a window edge wait in a buffer for the next window, so windows must be
    contiguous and increasing (gaps are allowed and skipped).
    """

    def __init__(self, table: RateTable, spec: TraceWorkload, seed: int) -> None:
        if table.counts.size == 0:
            raise TidalInputError(str(spec.path), "the trace has no intervals")
        self._rng = np.random.default_rng(seed)
        span_end = float(np.max(table.starts)) + table.width
        w0 = _window_start(spec, span_end, "last interval ending")
        w1 = span_end if spec.end is None else min(spec.end, span_end)
        self.duration: float | None = (w1 - w0) * spec.time_scale
        # Simulation-time interval starts; the cached array itself when no shift or scaling
        # applies (the per-second NASA trace has 5.4 M intervals).
        if w0 == 0.0 and spec.time_scale == 1.0:
            self._starts = table.starts
        else:
            self._starts = (table.starts - w0) * spec.time_scale
        self._width = table.width * spec.time_scale
        self._counts = table.counts
        self._scale = spec.rate_scale
        self._overlapping = table.overlapping  # only then do arrivals need a sort
        self._cursor = 0  # next interval to draw
        self._pending = np.empty(0, np.float64)  # drawn arrivals not yet handed out
        self._last_end = 0.0
        self.info: dict[str, Any] = {
            "path": str(spec.path),
            "format": "rate",
            "rows": table.rows,
            "intervals": int(table.counts.size),
            "interval": table.width,
            "empty_counts": table.empty_counts,
            "total_count": float(table.counts.sum()),
            "duration": self.duration,
            "time_scale": spec.time_scale,
            "rate_scale": spec.rate_scale,
        }
        logger.debug("rate trace %s: %d intervals of %g s", spec.path, table.counts.size, table.width)

    @property
    def counts(self) -> np.ndarray:
        """The parsed per-interval counts (before ``rate_scale``; read-only)."""
        return self._counts

    def arrivals(self, start: float, end: float) -> Arrivals:
        """Arrivals in ``[start, end)``; windows must not go back in time."""
        check_window(start, end)
        if start < self._last_end:
            raise ValueError(f"window [{start}, {end}) goes back before the previous window's end {self._last_end}")
        self._last_end = end
        assert self.duration is not None
        stop = min(end, self.duration)
        times = self._pending
        upto = int(np.searchsorted(self._starts, stop, side="left"))
        if upto > self._cursor:
            # Skip intervals that ended before this window (a gap in the window sequence).
            # (An interval ends after `start` iff it starts after `start - width`.)
            first = max(self._cursor, int(np.searchsorted(self._starts, start - self._width, side="right")))
            counts = scaled_counts(self._rng, self._counts[first:upto], self._scale)
            lo = self._starts[first:upto]
            new = sorted_uniform_in_bins(self._rng, lo, lo + self._width, counts)
            times = np.concatenate((times, new)) if times.size else new
            self._cursor = upto
            if self._overlapping:
                times = np.sort(times)
        a = int(np.searchsorted(times, start, side="left"))
        b = int(np.searchsorted(times, stop, side="left"))
        self._pending = times[b:]
        return unkeyed_arrivals(self._rng, times[a:b])

    def rate(self, t: np.ndarray) -> np.ndarray:
        """The interval's scaled count divided by its (scaled) length; 0 outside the trace."""
        t = np.asarray(t, np.float64)
        assert self.duration is not None
        k = np.searchsorted(self._starts, t, side="right") - 1
        safe = np.clip(k, 0, None)
        inside = (k >= 0) & (t < self._starts[safe] + self._width) & (t >= 0) & (t < self.duration)
        return np.where(inside, self._counts[safe] * (self._scale / self._width), 0.0)
