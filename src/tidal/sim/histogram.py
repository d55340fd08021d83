"""Log-bucketed latency histograms (≤ 1 % relative error, memory independent of request count).

Bucket 0 holds latencies below ``LATENCY_MIN``; bucket ``i >= 1`` holds
``[LATENCY_MIN * GROWTH**(i-1), LATENCY_MIN * GROWTH**i)``. Reporting the geometric midpoint of a
bucket is within ``sqrt(GROWTH) - 1 < 1 %`` of any latency inside it. The compiled data plane uses
the same constants (see :mod:`tidal.sim.dataplane`).
"""

from __future__ import annotations

import math

import numpy as np

LATENCY_MIN = 1e-6  # seconds
LATENCY_MAX = 1e6
GROWTH = 1.02
INV_LOG_GROWTH = 1.0 / math.log(GROWTH)
N_BUCKETS = int(math.ceil(math.log(LATENCY_MAX / LATENCY_MIN) * INV_LOG_GROWTH)) + 2

_edges = LATENCY_MIN * GROWTH ** np.arange(N_BUCKETS - 1, dtype=np.float64)
#: Representative value of each bucket (geometric midpoint; 0 for the underflow bucket).
BUCKET_VALUES = np.concatenate([[0.0], _edges * math.sqrt(GROWTH)])


def bucket_of(latency: float) -> int:
    """Bucket index of one latency (the Python twin of the compiled routine)."""
    if latency < LATENCY_MIN:
        return 0
    return min(int(math.log(latency / LATENCY_MIN) * INV_LOG_GROWTH) + 1, N_BUCKETS - 1)


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
