"""Log-bucketed histograms: ≤ 1 % relative error, matching the compiled bucket function."""

from __future__ import annotations

import numpy as np

from tidal.sim import histogram
from tidal.sim.dataplane import _bucket


def test_bucket_values_within_one_percent():
    rng = np.random.default_rng(0)
    latencies = np.exp(rng.uniform(np.log(2e-6), np.log(9e5), 20_000))
    for x in latencies:
        b = histogram.bucket_of(float(x))
        assert abs(histogram.BUCKET_VALUES[b] / x - 1) <= histogram.RESOLUTION <= 0.01
        assert b == _bucket(float(x))
    assert np.array_equal(histogram.buckets_of(latencies), [histogram.bucket_of(float(x)) for x in latencies])
    assert histogram.bucket_of(1e-9) == 0 and histogram.bucket_of(1e9) == histogram.N_BUCKETS - 1


def test_quantiles_match_numpy_within_resolution():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(-2.0, 1.0, 200_000)
    hist = histogram.empty_histogram()
    np.add.at(hist, [histogram.bucket_of(float(x)) for x in samples], 1)
    for q, got in zip((0.5, 0.9, 0.99, 0.999), histogram.quantiles(hist, (0.5, 0.9, 0.99, 0.999)), strict=True):
        exact = np.quantile(samples, q)
        assert abs(got / exact - 1) <= 0.011
    assert abs(histogram.mean(hist) / samples.mean() - 1) <= 0.005
    assert np.isnan(histogram.quantiles(histogram.empty_histogram(), (0.5,))[0])


def test_memory_is_fixed():
    assert histogram.N_BUCKETS < 4000
