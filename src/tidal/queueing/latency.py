"""Response-time distributions of a G/G/c FCFS queue, for latency-percentile SLOs.

M/M/c is exact (:func:`tidal.queueing.models.mmc`). For general arrivals and service the
model combines three standard approximations:

* an arrival waits with the M/M/c probability (Erlang C), which depends on the load only
  weakly through the variability (the insensitivity that makes square-root staffing work);
* the mean wait is Allen–Cunneen's, Wq ≈ Wq(M/M/c) (ca² + cs²) / 2;
* the wait of those who wait is exponential with that conditional mean (the heavy-traffic
  limit), and independent of the request's own service time.

So with C the Erlang C probability, θ = cμ(1 - ρ) and k = (ca² + cs²)/2, the wait is 0 with
probability 1 - C and Exp(θ/k) otherwise, and the response time T = W + S has
P(T <= t) = (1 - C) F_S(t) + C ∫_0^t (θ/k) e^{-(θ/k) w} F_S(t - w) dw. With exponential
service and Poisson arrivals (k = 1) this is the exact M/M/c result, and the code then uses the
exact model object so the two agree bit for bit.

The integral is closed-form for exponential and deterministic service and otherwise computed by
96-point Gauss–Legendre quadrature after the substitution v = e^{-r w}, which maps the
exponential weight to a flat one (absolute error below 1e-5 on the CDF for gamma CVs from 0.3 to 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _checks
from .erlang import _erlang_b, erlang_b_step, erlang_c_from_b
from .models import MMcMetrics, _mmc_from
from .service import ServiceTime, bisect_increasing

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)


@dataclass(frozen=True, slots=True)
class ResponseTime:
    """Approximate steady-state wait and response time of a G/G/c FCFS queue.

    ``p_wait`` is the probability an arrival waits (Erlang C); those who wait wait an
    exponential time with rate ``wait_rate``. ``exact`` is True for M/M/c (Poisson arrivals,
    exponential service), where ``mmc`` holds the exact model the methods delegate to.
    """

    arrival_rate: float
    service: ServiceTime
    servers: int
    arrival_cv: float
    utilization: float
    p_wait: float
    wait_rate: float
    mmc: MMcMetrics | None

    @property
    def exact(self) -> bool:
        return self.mmc is not None

    @property
    def mean_wait(self) -> float:
        """Wq: Allen–Cunneen's mean wait (exact for M/M/c)."""
        if self.mmc is not None:
            return self.mmc.mean_wait
        return 0.0 if math.isinf(self.wait_rate) else self.p_wait / self.wait_rate

    @property
    def mean_response(self) -> float:
        """W = Wq + E[S]."""
        if self.mmc is not None:
            return self.mmc.mean_response
        return self.mean_wait + self.service.mean

    def wait_tail(self, t: ArrayLike) -> float | NDArray[np.float64]:
        """P(Wq > t) ≈ C e^{-r t}."""
        tt = _checks.times("t", t)
        if self.mmc is not None:
            return self.mmc.wait_tail(t)
        with np.errstate(invalid="ignore"):
            tail = np.where(np.isinf(self.wait_rate), 0.0, self.p_wait * np.exp(-self.wait_rate * tt))
        return _like(t, tail)

    def response_cdf(self, t: ArrayLike) -> float | NDArray[np.float64]:
        """P(T <= t) for the response time T = wait + service."""
        tt = _checks.times("t", t)
        if self.mmc is not None:
            return self.mmc.response_cdf(t)
        return _like(t, response_cdf(self.service, self.p_wait, self.wait_rate, tt))

    def response_tail(self, t: ArrayLike) -> float | NDArray[np.float64]:
        """P(T > t)."""
        cdf = self.response_cdf(t)
        return 1.0 - cdf

    def response_percentile(self, alpha: float) -> float:
        """Smallest t with P(T <= t) >= alpha."""
        alpha = _checks.probability("alpha", alpha)
        if self.mmc is not None:
            return self.mmc.response_percentile(alpha)
        return bisect_increasing(lambda t: float(self.response_cdf(t)), alpha, self.service.mean)


def ggc_response(lam: float, service: ServiceTime, c: int, arrival_cv: float = 1.0) -> ResponseTime:
    """G/G/c response time for arrival rate ``lam``, ``service`` and ``c`` servers.

    ``arrival_cv`` is the coefficient of variation of interarrival times (1 for Poisson).
    Raises ``ValueError("unstable: ...")`` when λ E[S] / c >= 1.
    """
    lam = _checks.positive("lam", lam)
    c = _checks.servers("c", c)
    arrival_cv = _checks.non_negative("arrival_cv", arrival_cv)
    a = lam / service.rate  # as mmc() computes it, so the M/M/c case agrees bit for bit
    rho = a / c
    _checks.stable(rho, "utilization lam*mean_s/c")
    return response_from_erlang(lam, service, c, arrival_cv, erlang_c_from_b(_erlang_b(c, a), rho))


def response_from_erlang(lam: float, service: ServiceTime, c: int, arrival_cv: float, c_wait: float) -> ResponseTime:
    """Assemble a :class:`ResponseTime` from a precomputed Erlang C (sizing searches walk c up)."""
    mu = service.rate
    rho = (lam / mu) / c
    exact = service.is_exponential and arrival_cv == 1.0
    mmc = _mmc_from(lam, mu, c, c_wait) if exact else None
    k = _variability(arrival_cv, service)
    decay = c * mu * (1.0 - rho)
    wait_rate = math.inf if k == 0.0 else decay / k
    p_wait = 0.0 if k == 0.0 else c_wait
    return ResponseTime(lam, service, c, arrival_cv, rho, p_wait, wait_rate, mmc)


def response_cdf(service: ServiceTime, p_wait: ArrayLike, wait_rate: ArrayLike, t: ArrayLike) -> NDArray[np.float64]:
    """P(W + S <= t) with W = 0 w.p. 1 - p_wait, else Exp(wait_rate); arguments broadcast.

    The vectorised core shared by :class:`ResponseTime` and the grids the MPC policy
    evaluates (one call for every (rate, replicas) pair of a plan).
    """
    p = np.asarray(p_wait, dtype=np.float64)
    r = np.asarray(wait_rate, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)
    p, r, tt = np.broadcast_arrays(p, r, tt)
    f_service = service.cdf(tt)
    waits = (p > 0.0) & np.isfinite(r)
    conv = np.zeros(p.shape)
    if waits.any():
        conv[waits] = _wait_plus_service_cdf(service, r[waits], tt[waits])
    return np.clip((1.0 - p) * f_service + p * conv, 0.0, 1.0)


def response_tail_grid(
    rates: ArrayLike, servers: ArrayLike, service: ServiceTime, t: float, arrival_cv: float = 1.0
) -> NDArray[np.float64]:
    """P(T > t) for every pair of arrival rate (rows) and server count (columns).

    1.0 where the pair is unstable (ρ >= 1: the queue grows, eventually every request misses);
    a rate of 0 leaves only the service time. One Erlang B recursion per call serves all pairs.
    """
    p_wait, wait_rate, stable = _grid(rates, servers, service, arrival_cv)
    tail = 1.0 - response_cdf(service, np.where(stable, p_wait, 0.0), np.where(stable, wait_rate, np.inf), t)
    return np.where(stable, tail, 1.0)


def mean_response_grid(
    rates: ArrayLike, servers: ArrayLike, service: ServiceTime, arrival_cv: float = 1.0
) -> NDArray[np.float64]:
    """Mean response time for every (rate, servers) pair; ``inf`` where unstable."""
    p_wait, wait_rate, stable = _grid(rates, servers, service, arrival_cv)
    with np.errstate(divide="ignore", invalid="ignore"):
        wq = np.where(np.isinf(wait_rate), 0.0, p_wait / wait_rate)
    return np.where(stable, wq + service.mean, np.inf)


# --------------------------------------------------------------------------- internals


def _variability(arrival_cv: float, service: ServiceTime) -> float:
    return (arrival_cv**2 + service.cv**2) / 2.0


def _grid(rates: ArrayLike, servers: ArrayLike, service: ServiceTime, arrival_cv: float) -> tuple[Any, Any, Any]:
    lam = np.asarray(rates, dtype=np.float64).reshape(-1, 1)
    cs = np.asarray(servers, dtype=np.int64).reshape(1, -1)
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError(f"rates must be finite and >= 0, got {rates!r}")
    if np.any(cs < 1):
        raise ValueError(f"servers must be >= 1, got {servers!r}")
    a = lam / service.rate  # offered load per rate, column vector
    erlang_b = np.ones((lam.shape[0], cs.shape[1]))
    b = np.ones(lam.shape[0])
    wanted = cs.reshape(-1)
    order = np.argsort(wanted, kind="stable")
    k = 0
    a_flat = a.reshape(-1)
    for idx in order:  # walk the recursion once, reading off B(c) at each requested c
        while k < wanted[idx]:
            k += 1
            b = erlang_b_step(b, k, a_flat)
        erlang_b[:, idx] = b
    rho = a / cs
    stable = rho < 1.0
    safe_rho = np.where(stable, rho, 0.0)
    c_wait = erlang_c_from_b(erlang_b, safe_rho)
    kvar = _variability(arrival_cv, service)
    decay = cs * service.rate * (1.0 - safe_rho)
    if kvar == 0.0:
        return np.zeros_like(c_wait), np.full_like(c_wait, np.inf), stable
    return c_wait, decay / kvar, stable


def _wait_plus_service_cdf(service: ServiceTime, r: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(W + S <= t) for W ~ Exp(r) independent of S."""
    if service.family == "exponential":
        return 1.0 - _hypo(r, service.rate, t)
    if service.family == "deterministic":
        return np.where(t >= service.mean, -np.expm1(-r * np.maximum(t - service.mean, 0.0)), 0.0)
    # ∫_0^t r e^{-rw} F_S(t - w) dw = ∫_{e^{-rt}}^1 F_S(t + ln(v)/r) dv.
    lo = np.exp(-r * t)
    half = (1.0 - lo) / 2.0
    v = lo[:, None] + half[:, None] * (_NODES[None, :] + 1.0)
    s = t[:, None] + np.log(v) / r[:, None]
    return half * (service.cdf(s) @ _WEIGHTS)


def _hypo(r: NDArray[np.float64], mu: float, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(Exp(r) + Exp(mu) > t) elementwise: ``models._hypoexp_tail``'s cancellation-free form."""
    s = np.minimum(r, mu)
    f = np.maximum(r, mu)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        x = (f - s) * t
        g = np.where(x > 0.0, -np.expm1(-x) / np.where(x > 0.0, x, 1.0), 1.0)
        tail = np.exp(-s * t) * (1.0 + s * t * g)
    return np.where(np.isinf(t), 0.0, tail)


def _like(template: ArrayLike, values: NDArray[np.float64]) -> float | NDArray[np.float64]:
    return float(values) if np.ndim(template) == 0 else values
