"""Service-time distributions given by a mean and a coefficient of variation (CV).

Capacity planning only knows two moments of the service time, so a family fixes the shape:
``gamma`` (the default, as in the simulator: CV 1 is exponential, CV < 1 is Erlang-like, CV > 1
has a heavy head and a long tail), ``lognormal``, ``exponential`` or ``deterministic``. The CDF is
all the latency models need; it is vectorised with numpy and has no SciPy dependency (the
regularised incomplete gamma function is computed here by its series and continued fraction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from . import _checks

Family = Literal["deterministic", "exponential", "gamma", "lognormal"]
FAMILIES: tuple[str, ...] = ("gamma", "lognormal", "exponential", "deterministic")

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


@dataclass(frozen=True, slots=True)
class ServiceTime:
    """A service-time distribution: ``mean`` seconds, coefficient of variation ``cv``, ``family``.

    Build it with :func:`service_time`, which normalises the degenerate cases (CV 0 is
    deterministic, a gamma with CV 1 is exponential) so exact models can recognise them.
    """

    mean: float
    cv: float
    family: Family

    @property
    def rate(self) -> float:
        """μ = 1 / mean, services per second per server."""
        return 1.0 / self.mean

    @property
    def is_exponential(self) -> bool:
        return self.family == "exponential"

    def cdf(self, t: ArrayLike) -> NDArray[np.float64]:
        """P(S <= t), elementwise; ``t`` may be negative (probability 0 there)."""
        x = np.asarray(t, dtype=np.float64)
        if self.family == "deterministic":
            return np.where(x >= self.mean, 1.0, 0.0)
        pos = np.maximum(x, 0.0)
        if self.family == "exponential":
            return np.where(x > 0.0, -np.expm1(-pos / self.mean), 0.0)
        if self.family == "gamma":
            shape = 1.0 / (self.cv * self.cv)
            return np.where(x > 0.0, gamma_p(shape, pos * shape / self.mean), 0.0)
        sigma2 = math.log1p(self.cv * self.cv)
        mu = math.log(self.mean) - sigma2 / 2.0
        with np.errstate(divide="ignore"):
            z = (np.log(np.where(x > 0.0, pos, 1.0)) - mu) / math.sqrt(2.0 * sigma2)
        return np.where(x > 0.0, 0.5 * _erfc(-z), 0.0)

    def percentile(self, alpha: float) -> float:
        """Smallest t with P(S <= t) >= alpha (bisection on the CDF)."""
        alpha = _checks.probability("alpha", alpha)
        if self.family == "deterministic":
            return self.mean
        if self.family == "exponential":
            return -self.mean * math.log1p(-alpha)
        return bisect_increasing(lambda t: float(self.cdf(t)), alpha, self.mean)

    def describe(self) -> str:
        if self.family in ("deterministic", "exponential"):
            return f"{self.family} mean {self.mean:g}s"
        return f"{self.family} mean {self.mean:g}s cv {self.cv:g}"


def service_time(mean: float, cv: float = 1.0, family: Family = "gamma") -> ServiceTime:
    """A validated :class:`ServiceTime`; CV 0 is deterministic and a gamma with CV 1 exponential."""
    mean = _checks.positive("service_time", mean)
    cv = _checks.non_negative("cv", cv)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if family == "exponential":
        if cv != 1.0:
            raise ValueError(f"cv of an exponential service time is 1, got {cv!r}")
        return ServiceTime(mean, 1.0, "exponential")
    if family == "deterministic" and cv != 0.0:
        raise ValueError(f"cv of a deterministic service time is 0, got {cv!r}")
    if cv == 0.0:
        return ServiceTime(mean, 0.0, "deterministic")
    if family == "gamma" and cv == 1.0:
        return ServiceTime(mean, 1.0, "exponential")
    return ServiceTime(mean, cv, family)


def bisect_increasing(f, target: float, scale: float, rel_tol: float = 1e-9) -> float:
    """Smallest t >= 0 with ``f(t) >= target`` for a non-decreasing ``f``, to ``rel_tol``."""
    lo, hi = 0.0, max(scale, 1e-12)
    while f(hi) < target:
        lo, hi = hi, 2.0 * hi
        if hi > 1e12:
            raise ValueError(f"no t with f(t) >= {target!r} below 1e12 seconds")
    while hi - lo > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def gamma_p(a: float, x: ArrayLike) -> NDArray[np.float64]:
    """Regularised lower incomplete gamma P(a, x) = γ(a, x) / Γ(a), elementwise for x >= 0.

    The power series converges fast for x < a + 1 and the continued fraction for Q = 1 - P
    (modified Lentz) for x >= a + 1; each is used where it needs few terms, as in Numerical
    Recipes' ``gammp``. Accurate to ~1e-14 absolute. Compiled with numba: the latency grids of
    the MPC policy evaluate it on ~10⁵ points per decision, and a per-element loop stops as soon
    as that element has converged, where a vectorised numpy loop runs every element as long as
    the slowest.
    """
    xs = np.asarray(x, dtype=np.float64)
    return _gamma_p_kernel(float(a), np.ascontiguousarray(xs.reshape(-1))).reshape(xs.shape)


@njit(cache=True)
def _gamma_p_kernel(a: float, x: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(x.shape[0])
    lg = math.lgamma(a)
    for i in range(x.shape[0]):
        xi = x[i]
        if not xi > 0.0:
            out[i] = 0.0
            continue
        if math.isinf(xi):
            out[i] = 1.0
            continue
        log_pre = -xi + a * math.log(xi) - lg
        if xi < a + 1.0:
            term = 1.0 / a
            total = term
            ap = a
            for _ in range(_MAX_ITER):
                ap += 1.0
                term *= xi / ap
                total += term
                if abs(term) <= abs(total) * _EPS:
                    break
            value = total * math.exp(log_pre)
        else:
            b = xi + 1.0 - a
            c = 1.0 / _TINY
            d = 1.0 / b
            h = d
            for k in range(1, _MAX_ITER):
                an = -k * (k - a)
                b += 2.0
                d = an * d + b
                if abs(d) < _TINY:
                    d = _TINY
                c = b + an / c
                if abs(c) < _TINY:
                    c = _TINY
                d = 1.0 / d
                delta = d * c
                h *= delta
                if abs(delta - 1.0) <= _EPS:
                    break
            value = 1.0 - math.exp(log_pre) * h
        out[i] = min(max(value, 0.0), 1.0)
    return out


@njit(cache=True)
def _erfc_kernel(z: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(z.shape[0])
    for i in range(z.shape[0]):
        out[i] = math.erfc(z[i])
    return out


def _erfc(z: NDArray[np.float64]) -> NDArray[np.float64]:
    zz = np.asarray(z, dtype=np.float64)  # not ascontiguousarray: it makes 0-d inputs 1-d
    return _erfc_kernel(np.ascontiguousarray(zz.reshape(-1))).reshape(zz.shape)
