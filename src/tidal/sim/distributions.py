"""Vectorised sampling of the scenario's random durations (service time, cold start)."""

from __future__ import annotations

import math

import numpy as np

from tidal.config.scenario import DistributionSpec


def sample(spec: DistributionSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` non-negative durations from ``spec`` (mean and coefficient of variation)."""
    kind = spec.distribution
    if kind == "empirical":
        assert spec.values is not None
        return rng.choice(np.asarray(spec.values, dtype=np.float64), size=n)
    mean = float(spec.mean or 0.0)
    if kind == "deterministic" or mean == 0.0:
        return np.full(n, mean)
    if kind == "exponential":
        return rng.exponential(mean, size=n)
    cv = spec.cv
    if kind == "lognormal":
        sigma2 = math.log1p(cv * cv)
        return rng.lognormal(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2), size=n)
    if kind == "gamma":
        shape = 1.0 / (cv * cv)
        return rng.gamma(shape, mean / shape, size=n)
    raise ValueError(f"unknown distribution {kind!r}")


def second_moment(spec: DistributionSpec) -> float:
    """E[X²] of the distribution (for Pollaczek–Khinchine checks and capacity planning)."""
    if spec.distribution == "empirical":
        values = np.asarray(spec.values, dtype=np.float64)
        return float((values * values).mean())
    mean = float(spec.mean or 0.0)
    if spec.distribution == "deterministic":
        return mean * mean
    if spec.distribution == "exponential":
        return 2.0 * mean * mean
    return mean * mean * (1.0 + spec.cv * spec.cv)
