"""Log-linear latency histograms (≤ 1 % relative error, memory independent of request count).

Each power of two is split into ``SUB_BUCKETS`` equal sub-buckets (the HdrHistogram layout), so a
bucket's index comes from the float's exponent and leading mantissa bits — ``math.frexp`` and
integer arithmetic, no logarithm on the hot path. A bucket spans at most 1/64 of its lower edge;
reporting its midpoint is within 1/128 < 1 % of any latency inside it.

Bucket 0 holds latencies below ``LATENCY_MIN``; the last bucket also holds everything above
``LATENCY_MAX``. The compiled data plane uses the same layout (:func:`tidal.sim.dataplane._bucket`).
"""

from __future__ import annotations

import math

import numpy as np

SUB_BUCKETS = 64
LATENCY_MIN = 2.0**-20  # ≈ 0.95 µs
LATENCY_MAX = 2.0**20  # ≈ 12 days
#: frexp exponent of LATENCY_MIN (frexp returns a mantissa in [0.5, 1)).
MIN_EXPONENT = math.frexp(LATENCY_MIN)[1]
N_OCTAVES = math.frexp(LATENCY_MAX)[1] - MIN_EXPONENT
N_BUCKETS = N_OCTAVES * SUB_BUCKETS + 2
#: Largest relative distance between a latency and its bucket's reported value.
RESOLUTION = 1.0 / (2 * SUB_BUCKETS)


def _bucket_bounds() -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(N_OCTAVES * SUB_BUCKETS)
    octave, sub = np.divmod(k, SUB_BUCKETS)
    base = np.ldexp(0.5, octave + MIN_EXPONENT)
    lower = base * (1.0 + sub / SUB_BUCKETS)
    upper = base * (1.0 + (sub + 1) / SUB_BUCKETS)
    return lower, upper


_lower, _upper = _bucket_bounds()
#: Representative value of each bucket: its midpoint (0 for the underflow bucket, the lower
#: edge for the overflow bucket).
BUCKET_VALUES = np.concatenate([[0.0], (_lower + _upper) / 2.0, [LATENCY_MAX]])


def bucket_of(latency: float) -> int:
    """Bucket index of one latency (the Python twin of the compiled routine)."""
    if latency < LATENCY_MIN:
        return 0
    mantissa, exponent = math.frexp(latency)
    b = (exponent - MIN_EXPONENT) * SUB_BUCKETS + int((2.0 * mantissa - 1.0) * SUB_BUCKETS) + 1
    return min(b, N_BUCKETS - 1)


def buckets_of(latencies: np.ndarray) -> np.ndarray:
    """Bucket indices of many latencies (vectorised :func:`bucket_of`)."""
    x = np.asarray(latencies, dtype=np.float64)
    mantissa, exponent = np.frexp(np.maximum(x, LATENCY_MIN))
    b = (exponent - MIN_EXPONENT) * SUB_BUCKETS + ((2.0 * mantissa - 1.0) * SUB_BUCKETS).astype(np.int64) + 1
    return np.where(x < LATENCY_MIN, 0, np.minimum(b, N_BUCKETS - 1)).astype(np.int64)


def empty_histogram() -> np.ndarray:
    return np.zeros(N_BUCKETS, dtype=np.int64)


def quantiles(hist: np.ndarray, qs: tuple[float, ...] | list[float]) -> list[float]:
    """Latency quantiles from a histogram (NaN when it is empty)."""
    total = int(hist.sum())
    if total == 0:
        return [math.nan for _ in qs]
    cumulative = np.cumsum(hist)
    out = []
    for q in qs:
        rank = max(1, math.ceil(q * total))
        out.append(float(BUCKET_VALUES[int(np.searchsorted(cumulative, rank))]))
    return out


def mean(hist: np.ndarray) -> float:
    total = hist.sum()
    return float((hist * BUCKET_VALUES).sum() / total) if total else math.nan


def fraction_at_most(hist: np.ndarray, threshold: float) -> float:
    """Approximate fraction of latencies ≤ threshold (bucket resolution)."""
    total = hist.sum()
    if total == 0:
        return math.nan
    return float(hist[: bucket_of(threshold) + 1].sum() / total)
