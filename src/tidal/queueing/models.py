"""Closed-form and approximate steady-state queueing models.

Conventions: ``lam`` (λ) is the arrival rate and ``mu`` (μ) the per-server service rate, both
per second; times are in seconds; ``c`` is the number of servers. Every function is pure
(no I/O, no state) and validates its inputs, raising ``ValueError`` that names the offending
parameter, or ``ValueError("unstable: ...")`` when the utilization is >= 1 and no steady state
exists.

Exact models: :func:`mm1`, :func:`mmc` (with waiting- and response-time distributions),
:func:`md1`, :func:`mg1` (Pollaczek–Khinchine). Approximations: :func:`mgc_allen_cunneen`,
:func:`kingman_gg1`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _checks
from .erlang import _erlang_b, erlang_c_from_b

FloatOrArray = float | NDArray[np.float64]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class MMcMetrics:
    """Steady state of an M/M/c FCFS queue (M/M/1 when ``servers == 1``).

    ``p_wait`` is the Erlang C probability that an arrival waits; ``mean_wait`` is Wq (time in
    queue), ``mean_response`` is W = Wq + 1/μ, ``mean_queue_length`` is Lq and
    ``mean_in_system`` is L (Little: Lq = λ Wq, L = λ W). The methods give the distributions.
    """

    arrival_rate: float
    service_rate: float
    servers: int
    utilization: float
    p_wait: float
    mean_wait: float
    mean_response: float
    mean_queue_length: float
    mean_in_system: float

    @property
    def mean_service(self) -> float:
        """Mean service time 1/μ."""
        return 1.0 / self.service_rate

    @property
    def decay_rate(self) -> float:
        """cμ - λ: the rate of the exponential waiting time of those who wait."""
        return _decay(self.servers, self.service_rate, self.utilization)

    def wait_tail(self, t: ArrayLike) -> FloatOrArray:
        """P(Wq > t) = C exp(-(cμ - λ) t). Accepts a scalar or an array of times >= 0."""
        tt = _checks.times("t", t)
        return _like(t, self.p_wait * np.exp(-self.decay_rate * tt))

    def wait_cdf(self, t: ArrayLike) -> FloatOrArray:
        """P(Wq <= t) = 1 - P(Wq > t)."""
        tt = _checks.times("t", t)
        return _like(t, 1.0 - self.p_wait * np.exp(-self.decay_rate * tt))

    def wait_percentile(self, alpha: float) -> float:
        """Smallest t with P(Wq <= t) >= alpha; 0 when C <= 1 - alpha (enough never wait)."""
        alpha = _checks.probability("alpha", alpha)
        return _wait_percentile(self.p_wait, self.decay_rate, alpha)

    def response_tail(self, t: ArrayLike) -> FloatOrArray:
        """P(T > t) for the response time T = Wq + service (FCFS).

        Those who do not wait (probability 1 - C) see only Exp(μ) service; those who wait see
        Exp(cμ - λ) + Exp(μ), a hypoexponential. For M/M/1 this reduces to exp(-(μ - λ) t).
        """
        tt = _checks.times("t", t)
        mu, c_wait = self.service_rate, self.p_wait
        with np.errstate(over="ignore", under="ignore"):
            tail = (1.0 - c_wait) * np.exp(-mu * tt) + c_wait * _hypoexp_tail(self.decay_rate, mu, tt)
        return _like(t, np.clip(tail, 0.0, 1.0))

    def response_cdf(self, t: ArrayLike) -> FloatOrArray:
        """P(T <= t) for the response time (see :meth:`response_tail`)."""
        tail = self.response_tail(t)
        return 1.0 - tail

    def response_percentile(self, alpha: float) -> float:
        """Smallest t with P(T <= t) >= alpha, by bracketing and bisection on the closed form."""
        alpha = _checks.probability("alpha", alpha)
        target = 1.0 - alpha

        def tail(x: float) -> float:
            return float(self.response_tail(x))

        # The tail is continuous and strictly decreasing from 1 at t = 0, so a bracket exists.
        lo, hi = 0.0, 1.0 / min(self.decay_rate, self.service_rate)
        while tail(hi) > target:
            lo, hi = hi, 2.0 * hi
        for _ in range(200):  # ~60 halvings reach float resolution; 200 is a safe ceiling
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break
            if tail(mid) > target:
                lo = mid
            else:
                hi = mid
        return hi


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """Steady-state means of a single-station queue given by a formula or an approximation.

    ``mean_service`` is E[S]; ``utilization`` is λ E[S] / c. ``p_wait`` is the probability an
    arrival waits where the model gives it exactly (ρ for M/G/1, by PASTA), else ``None``.
    ``exact`` is False for heavy-traffic / interpolation approximations (Allen–Cunneen, Kingman).
    """

    arrival_rate: float
    mean_service: float
    servers: int
    utilization: float
    mean_wait: float
    mean_response: float
    mean_queue_length: float
    mean_in_system: float
    p_wait: float | None
    exact: bool


# --------------------------------------------------------------------------- M/M/c


def mm1(lam: float, mu: float) -> MMcMetrics:
    """M/M/1: ρ = λ/μ, Wq = ρ/(μ - λ), W = 1/(μ - λ)."""
    return mmc(lam, mu, 1)


def mmc(lam: float, mu: float, c: int) -> MMcMetrics:
    """M/M/c FCFS steady state via Erlang C: Wq = C / (cμ - λ)."""
    lam = _checks.positive("lam", lam)
    mu = _checks.positive("mu", mu)
    c = _checks.servers("c", c)
    a = lam / mu
    rho = a / c
    _checks.stable(rho, "utilization lam/(c*mu)")
    return _mmc_from(lam, mu, c, erlang_c_from_b(_erlang_b(c, a), rho))


def mmc_wait_tail(lam: float, mu: float, c: int, t: ArrayLike) -> FloatOrArray:
    """P(Wq > t) = C exp(-(cμ - λ) t) for M/M/c."""
    return mmc(lam, mu, c).wait_tail(t)


def mmc_wait_percentile(lam: float, mu: float, c: int, alpha: float) -> float:
    """Smallest t with P(Wq <= t) >= alpha for M/M/c (0 when C <= 1 - alpha)."""
    return mmc(lam, mu, c).wait_percentile(alpha)


def mm1_response_tail(lam: float, mu: float, t: ArrayLike) -> FloatOrArray:
    """P(T > t) = exp(-(μ - λ) t): the M/M/1 FCFS response time is Exp(μ - λ)."""
    m = mm1(lam, mu)
    tt = _checks.times("t", t)
    return _like(t, np.exp(-m.decay_rate * tt))


def mmc_response_time_cdf(lam: float, mu: float, c: int, t: ArrayLike) -> FloatOrArray:
    """P(T <= t) for the M/M/c FCFS response time (wait + Exp(μ) service).

    With θ = cμ - λ and θ != μ:
    P(T > t) = (1 - C) e^{-μt} + C (θ e^{-μt} - μ e^{-θt}) / (θ - μ); at θ = μ the bracket's
    limit is (1 + μt) e^{-μt}. The implementation uses a form that is smooth through θ = μ.
    """
    return mmc(lam, mu, c).response_cdf(t)


def mmc_response_percentile(lam: float, mu: float, c: int, alpha: float) -> float:
    """Smallest t with P(T <= t) >= alpha for the M/M/c FCFS response time."""
    return mmc(lam, mu, c).response_percentile(alpha)


# --------------------------------------------------------------------------- M/G/1 family


def mg1(lam: float, mean_s: float, cv_s: float) -> QueueMetrics:
    """M/G/1 by Pollaczek–Khinchine: Wq = λ E[S²] / (2(1 - ρ)), E[S²] = E[S]² (1 + cv²)."""
    lam = _checks.positive("lam", lam)
    mean_s = _checks.positive("mean_s", mean_s)
    cv_s = _checks.non_negative("cv_s", cv_s)
    return _pollaczek_khinchine(lam, mean_s, cv_s)


def md1(lam: float, d: float) -> QueueMetrics:
    """M/D/1 (deterministic service ``d`` seconds): Wq = ρ / (2μ(1 - ρ)) with μ = 1/d."""
    lam = _checks.positive("lam", lam)
    d = _checks.positive("d", d)
    return _pollaczek_khinchine(lam, d, 0.0)


def mgc_allen_cunneen(lam: float, mean_s: float, cv_a: float, cv_s: float, c: int) -> QueueMetrics:
    """G/G/c by the Allen–Cunneen approximation: Wq ≈ Wq(M/M/c) (ca² + cs²) / 2.

    ``cv_a`` and ``cv_s`` are the coefficients of variation of interarrival and service times.
    Exact for M/M/c (both 1); good in heavy traffic, rougher at low load.
    """
    lam = _checks.positive("lam", lam)
    mean_s = _checks.positive("mean_s", mean_s)
    cv_a = _checks.non_negative("cv_a", cv_a)
    cv_s = _checks.non_negative("cv_s", cv_s)
    base = mmc(lam, 1.0 / mean_s, c)
    wq = base.mean_wait * (cv_a**2 + cv_s**2) / 2.0
    return _metrics(lam, mean_s, base.servers, base.utilization, wq, p_wait=None, exact=False)


def kingman_gg1(lam: float, mean_s: float, cv_a: float, cv_s: float) -> QueueMetrics:
    """G/G/1 by Kingman's heavy-traffic formula: Wq ≈ ρ/(1 - ρ) (ca² + cs²)/2 E[S]."""
    lam = _checks.positive("lam", lam)
    mean_s = _checks.positive("mean_s", mean_s)
    cv_a = _checks.non_negative("cv_a", cv_a)
    cv_s = _checks.non_negative("cv_s", cv_s)
    rho = lam * mean_s
    _checks.stable(rho, "utilization lam*mean_s")
    wq = rho / (1.0 - rho) * (cv_a**2 + cv_s**2) / 2.0 * mean_s
    return _metrics(lam, mean_s, 1, rho, wq, p_wait=None, exact=False)


# --------------------------------------------------------------------------- internals


def _decay(c: int, mu: float, rho: float) -> float:
    # cμ(1 - ρ) rather than cμ - λ: it is positive whenever the ρ < 1 check passed, even when
    # rounding would make cμ - λ come out as 0 at the edge of stability.
    return c * mu * (1.0 - rho)


def _mmc_from(lam: float, mu: float, c: int, c_wait: float) -> MMcMetrics:
    """Assemble M/M/c metrics from Erlang C; the sizing search shares it to agree bit for bit."""
    rho = (lam / mu) / c
    wq = c_wait / _decay(c, mu, rho)
    w = wq + 1.0 / mu
    return MMcMetrics(
        arrival_rate=lam,
        service_rate=mu,
        servers=c,
        utilization=rho,
        p_wait=c_wait,
        mean_wait=wq,
        mean_response=w,
        mean_queue_length=lam * wq,
        mean_in_system=lam * w,
    )


def _wait_percentile(c_wait: float, decay: float, alpha: float) -> float:
    if c_wait <= 1.0 - alpha:
        return 0.0
    return math.log(c_wait / (1.0 - alpha)) / decay


def _pollaczek_khinchine(lam: float, mean_s: float, cv_s: float) -> QueueMetrics:
    rho = lam * mean_s
    _checks.stable(rho, "utilization lam*mean_s")
    second_moment = mean_s**2 * (1.0 + cv_s**2)
    wq = lam * second_moment / (2.0 * (1.0 - rho))
    return _metrics(lam, mean_s, 1, rho, wq, p_wait=rho, exact=True)


def _metrics(
    lam: float, mean_s: float, c: int, rho: float, wq: float, *, p_wait: float | None, exact: bool
) -> QueueMetrics:
    w = wq + mean_s
    return QueueMetrics(
        arrival_rate=lam,
        mean_service=mean_s,
        servers=c,
        utilization=rho,
        mean_wait=wq,
        mean_response=w,
        mean_queue_length=lam * wq,
        mean_in_system=lam * w,
        p_wait=p_wait,
        exact=exact,
    )


def _hypoexp_tail(r1: float, r2: float, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(X + Y > t) for independent X ~ Exp(r1), Y ~ Exp(r2).

    The textbook (r1 e^{-r2 t} - r2 e^{-r1 t}) / (r1 - r2) cancels catastrophically as r1 -> r2
    and is 0/0 at equality. It is symmetric in (r1, r2), so with s = min, f = max it equals
    e^{-st} (1 + s t g((f - s) t)), g(x) = (1 - e^{-x}) / x, g(0) = 1: no cancellation, no
    overflow, and the Erlang-2 limit (1 + st) e^{-st} falls out at f = s.
    """
    s, f = min(r1, r2), max(r1, r2)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore"):
        x = (f - s) * t  # 0 * inf = NaN at t = inf when f == s; masked below
        g = np.where(x > 0.0, -np.expm1(-x) / np.where(x > 0.0, x, 1.0), 1.0)
        tail = np.exp(-s * t) * (1.0 + s * t * g)
    return np.where(np.isinf(t), 0.0, tail)  # inf * 0 above would give NaN at t = inf


def _like(template: ArrayLike, values: NDArray[np.float64]) -> FloatOrArray:
    """Return a float for scalar input, an array otherwise."""
    return float(values) if np.ndim(template) == 0 else values
