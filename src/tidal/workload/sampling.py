"""Vectorised sampling kernels shared by the synthetic and trace workloads.

Everything is "piecewise constant": a window is cut into bins ``[edges[i], edges[i+1])`` with a
known number of arrivals (or a known expected number), and the arrivals of a bin are uniform in
it. The numba kernel writes each bin's arrivals already sorted, as normalised cumulative sums of
exponential spacings (the order statistics of uniforms), which avoids an O(n log n) sort: about
5 ns per arrival instead of ~70 ns for ``np.sort`` on this hardware.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _fill_sorted_uniform(
    rng: np.random.Generator, edges: np.ndarray, counts: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    pos = 0
    for b in range(counts.shape[0]):
        k = counts[b]
        if k == 0:
            continue
        lo = edges[b]
        hi = edges[b + 1]
        # k sorted uniforms on [0, 1) are S_1..S_k / S_{k+1}, S_j a sum of j unit exponentials.
        acc = 0.0
        for j in range(k):
            acc += rng.standard_exponential()
            out[pos + j] = acc
        acc += rng.standard_exponential()
        scale = (hi - lo) / acc
        below_hi = np.nextafter(hi, -np.inf)
        for j in range(k):
            v = lo + out[pos + j] * scale
            # Rounding can land exactly on hi; windows are half-open, so stay strictly below it.
            out[pos + j] = v if v < hi else below_hi
        pos += k


def sorted_uniform_in_bins(rng: np.random.Generator, edges: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``counts[i]`` uniform times in each bin ``[edges[i], edges[i+1])``, globally ascending.

    ``edges`` must be ascending (zero-width bins must have count 0).
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    out = np.empty(int(counts.sum()), np.float64)
    if out.shape[0]:
        _fill_sorted_uniform(rng, edges, counts, out)
    return out


def poisson_in_bins(rng: np.random.Generator, edges: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Poisson arrivals with ``expected[i]`` mean arrivals, uniform within bin ``i``; ascending."""
    counts = rng.poisson(np.maximum(expected, 0.0))
    return sorted_uniform_in_bins(rng, edges, counts)


def scaled_counts(rng: np.random.Generator, counts: np.ndarray, scale: float) -> np.ndarray:
    """``floor(c*scale)`` plus a Bernoulli on the fractional part: unbiased integer counts."""
    scaled = np.asarray(counts, np.float64) * scale
    whole = np.floor(scaled)
    extra = rng.random(scaled.shape[0]) < (scaled - whole)
    return whole.astype(np.int64) + extra
