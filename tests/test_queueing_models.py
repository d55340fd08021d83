"""Analytic queueing models: closed forms, exact sums, extreme-scale stability, sizing."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import integrate
from scipy.special import gammaln, logsumexp

from tidal.queueing import (
    MMcMetrics,
    erlang_b,
    erlang_c,
    kingman_gg1,
    md1,
    mg1,
    mgc_allen_cunneen,
    min_servers_for_mean_response,
    min_servers_for_wait,
    mm1,
    mm1_response_tail,
    mmc,
    mmc_response_percentile,
    mmc_response_time_cdf,
    mmc_wait_percentile,
    mmc_wait_tail,
)

# --------------------------------------------------------------------------- exact references


def _terms(c: int, a: Fraction) -> list[Fraction]:
    """a^k / k! for k = 0..c, exactly."""
    out = [Fraction(1)]
    for k in range(1, c + 1):
        out.append(out[-1] * a / k)
    return out


def exact_erlang_b(c: int, a: Fraction) -> Fraction:
    t = _terms(c, a)
    return t[c] / sum(t)


def exact_erlang_c(c: int, a: Fraction) -> Fraction:
    t = _terms(c, a)
    top = t[c] * c / (c - a)
    return top / (sum(t[:c]) + top)


def log_space_erlang_c(c: int, a: float) -> float:
    """Direct Erlang C summed in log space: an independent route for large c."""
    k = np.arange(c, dtype=np.float64)
    log_terms = k * math.log(a) - gammaln(k + 1.0)
    log_top = c * math.log(a) - gammaln(c + 1.0) + math.log(c / (c - a))
    return float(math.exp(log_top - logsumexp(np.append(log_terms, log_top))))


# --------------------------------------------------------------------------- Erlang B / C


def test_published_erlang_values() -> None:
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-7)
    assert erlang_c(2, 1.0) == pytest.approx(1.0 / 3.0, rel=1e-14)
    assert erlang_b(1, 1.0) == pytest.approx(0.5, rel=1e-15)
    assert erlang_b(2, 1.0) == pytest.approx(0.2, rel=1e-15)  # (1/2) / (1 + 1 + 1/2)


@pytest.mark.parametrize(
    ("c", "a"),
    [(1, Fraction(1, 2)), (2, Fraction(3, 2)), (3, Fraction(5, 2)), (5, Fraction(4)), (10, Fraction(9)),
     (10, Fraction(5)), (20, Fraction(37, 2)), (50, Fraction(45)), (7, Fraction(1, 10))],
)
def test_erlang_matches_exact_rational_sums(c: int, a: Fraction) -> None:
    assert erlang_b(c, float(a)) == pytest.approx(float(exact_erlang_b(c, a)), rel=1e-12)
    assert erlang_c(c, float(a)) == pytest.approx(float(exact_erlang_c(c, a)), rel=1e-12)


@pytest.mark.parametrize("rho", [0.01, 0.3, 0.8, 0.999])
def test_erlang_c_single_server_is_rho(rho: float) -> None:
    assert erlang_c(1, rho) == pytest.approx(rho, rel=1e-14)


def test_erlang_c_stable_at_ten_thousand_servers_near_saturation() -> None:
    c, a = 10_000, 9_990.0  # rho = 0.999
    value = erlang_c(c, a)
    assert math.isfinite(value) and 0.0 <= value <= 1.0
    assert value == pytest.approx(log_space_erlang_c(c, a), rel=1e-8)
    # and at moderate load, where the answer is tiny but must not underflow to garbage
    assert erlang_c(c, 9_000.0) == pytest.approx(log_space_erlang_c(c, 9_000.0), rel=1e-8)


def test_erlang_b_extremes() -> None:
    assert erlang_b(5, 0.0) == 0.0
    assert 0.0 <= erlang_b(10_000, 50_000.0) <= 1.0
    assert erlang_b(10_000, 50_000.0) == pytest.approx(0.8, rel=1e-3)  # heavy overload: B ≈ 1 - c/a


def test_erlang_c_rejects_unstable_load() -> None:
    with pytest.raises(ValueError, match="unstable"):
        erlang_c(4, 4.0)
    with pytest.raises(ValueError, match="unstable"):
        erlang_c(4, 5.0)


# --------------------------------------------------------------------------- M/M/1, M/M/c


def test_mm1_closed_forms() -> None:
    lam, mu = 0.8, 1.0
    m = mm1(lam, mu)
    rho = lam / mu
    assert isinstance(m, MMcMetrics) and m.servers == 1
    assert m.utilization == pytest.approx(rho)
    assert m.p_wait == pytest.approx(rho)
    assert m.mean_wait == pytest.approx(rho / (mu - lam))
    assert m.mean_response == pytest.approx(1.0 / (mu - lam))
    assert m.mean_queue_length == pytest.approx(rho**2 / (1 - rho))
    assert m.mean_in_system == pytest.approx(rho / (1 - rho))


def test_mmc_littles_law_and_consistency() -> None:
    m = mmc(45.0, 2.0, 25)
    assert m.utilization == pytest.approx(0.9)
    assert m.p_wait == pytest.approx(erlang_c(25, 22.5))
    assert m.mean_wait == pytest.approx(m.p_wait / (25 * 2.0 - 45.0))
    assert m.mean_queue_length == pytest.approx(45.0 * m.mean_wait)
    assert m.mean_in_system == pytest.approx(m.mean_queue_length + 22.5)


def test_wait_tail_and_percentile() -> None:
    lam, mu, c = 9.0, 1.0, 10
    m = mmc(lam, mu, c)
    assert mmc_wait_tail(lam, mu, c, 0.0) == pytest.approx(m.p_wait)
    assert mmc_wait_tail(lam, mu, c, 2.0) == pytest.approx(m.p_wait * math.exp(-2.0))
    np.testing.assert_allclose(m.wait_tail(np.array([0.0, 1.0])), m.p_wait * np.exp([0.0, -1.0]))
    for alpha in (0.5, 0.9, 0.99):
        t = mmc_wait_percentile(lam, mu, c, alpha)
        assert t > 0
        assert m.wait_cdf(t) == pytest.approx(alpha, rel=1e-12)
    # C <= 1 - alpha: most arrivals never wait, so the percentile is 0
    light = mmc(1.0, 1.0, 10)
    assert light.p_wait < 0.05 and light.wait_percentile(0.95) == 0.0


def test_mm1_response_tail_is_exponential() -> None:
    t = np.linspace(0.0, 20.0, 41)
    np.testing.assert_allclose(mm1_response_tail(0.8, 1.0, t), np.exp(-0.2 * t), rtol=1e-13)
    # the general M/M/c response formula reduces to it at c = 1
    np.testing.assert_allclose(1.0 - mmc_response_time_cdf(0.8, 1.0, 1, t), np.exp(-0.2 * t), rtol=1e-10, atol=1e-15)
    assert mmc_response_percentile(0.8, 1.0, 1, 0.99) == pytest.approx(-math.log(0.01) / 0.2, rel=1e-10)


def _integrated_response_cdf(lam: float, mu: float, c: int, t: float) -> float:
    """P(T <= t) by conditioning on the wait: (1-C)(1 - e^{-μt}) + C ∫ θe^{-θx}(1 - e^{-μ(t-x)}) dx."""
    cw = erlang_c(c, lam / mu)
    theta = c * mu - lam
    waited, _ = integrate.quad(lambda x: theta * math.exp(-theta * x) * (1.0 - math.exp(-mu * (t - x))), 0.0, t,
                               epsabs=1e-14, epsrel=1e-12)
    return (1.0 - cw) * (1.0 - math.exp(-mu * t)) + cw * waited


@pytest.mark.parametrize(
    ("lam", "mu", "c"),
    [(9.0, 1.0, 10), (1.0, 1.0, 2), (3.0, 2.0, 2), (0.5, 1.0, 4), (95.0, 1.0, 100)],  # (1,1,2): cμ-λ = μ
)
def test_response_cdf_matches_numerical_integration(lam: float, mu: float, c: int) -> None:
    for t in (0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 15.0):
        got = mmc_response_time_cdf(lam, mu, c, t)
        assert got == pytest.approx(_integrated_response_cdf(lam, mu, c, t), abs=1e-10)


def test_response_cdf_is_smooth_through_equal_rates() -> None:
    # cμ - λ = μ exactly at λ = 1 (c=2, μ=1); nearby λ must not blow up from cancellation
    t = np.array([0.5, 1.0, 3.0])
    at = mmc_response_time_cdf(1.0, 1.0, 2, t)
    for eps in (1e-12, 1e-9, 1e-6):
        np.testing.assert_allclose(mmc_response_time_cdf(1.0 + eps, 1.0, 2, t), at, atol=1e-5)
        np.testing.assert_allclose(mmc_response_time_cdf(1.0 - eps, 1.0, 2, t), at, atol=1e-5)
    assert mmc_response_time_cdf(1.0, 1.0, 2, math.inf) == 1.0


def test_response_percentile_inverts_cdf() -> None:
    m = mmc(45.0, 2.0, 25)
    for alpha in (0.5, 0.95, 0.999):
        t = m.response_percentile(alpha)
        assert m.response_cdf(t) == pytest.approx(alpha, abs=1e-9)
        assert m.response_percentile(alpha) >= m.wait_percentile(alpha)


# --------------------------------------------------------------------------- M/G/1 family


def test_md1_is_half_the_mm1_wait() -> None:
    lam, d = 0.7, 1.0
    mu, rho = 1.0 / d, lam * d
    m = md1(lam, d)
    assert m.mean_wait == pytest.approx(rho / (2 * mu * (1 - rho)))
    assert m.mean_wait == pytest.approx(mm1(lam, mu).mean_wait / 2)
    assert m.mean_response == pytest.approx(m.mean_wait + d)
    assert m.p_wait == pytest.approx(rho) and m.exact


def test_mg1_pollaczek_khinchine() -> None:
    lam, s, cv = 0.5, 1.2, 2.0
    rho = lam * s
    m = mg1(lam, s, cv)
    assert m.mean_wait == pytest.approx(lam * s**2 * (1 + cv**2) / (2 * (1 - rho)))
    assert m.mean_queue_length == pytest.approx(lam * m.mean_wait)
    # cv = 1 is M/M/1
    assert mg1(0.8, 1.0, 1.0).mean_wait == pytest.approx(mm1(0.8, 1.0).mean_wait)


def test_approximations_reduce_to_exact_cases() -> None:
    # Allen–Cunneen with Poisson arrivals and exponential service is M/M/c
    assert mgc_allen_cunneen(45.0, 0.5, 1.0, 1.0, 25).mean_wait == pytest.approx(mmc(45.0, 2.0, 25).mean_wait)
    # Kingman is exact for M/G/1 (Poisson arrivals)
    assert kingman_gg1(0.6, 1.0, 1.0, 0.5).mean_wait == pytest.approx(mg1(0.6, 1.0, 0.5).mean_wait)
    # deterministic everything: no waiting
    assert kingman_gg1(0.6, 1.0, 0.0, 0.0).mean_wait == 0.0
    assert not kingman_gg1(0.6, 1.0, 1.0, 1.0).exact
    # scaling in variability
    base = mgc_allen_cunneen(8.0, 1.0, 1.0, 1.0, 10).mean_wait
    assert mgc_allen_cunneen(8.0, 1.0, 1.0, 0.0, 10).mean_wait == pytest.approx(base / 2)


# --------------------------------------------------------------------------- sizing


def _brute_min_servers(ok, a: float) -> int:  # type: ignore[no-untyped-def]
    c = math.floor(a) + 1
    while not ok(c):
        c += 1
    return c


@pytest.mark.parametrize(
    ("lam", "mu", "t", "alpha"),
    [(100.0, 1.0, 0.1, 0.95), (0.5, 1.0, 0.0, 0.8), (10.0, 2.0, 0.2, 0.99), (3.0, 1.0, 0.0, 0.5),
     (1000.0, 0.5, 0.05, 0.999), (2.0, 1.0, 1.0, 0.9)],
)
def test_min_servers_for_wait_is_exact(lam: float, mu: float, t: float, alpha: float) -> None:
    c = min_servers_for_wait(lam, mu, t, alpha)
    assert mmc(lam, mu, c).wait_cdf(t) >= alpha
    if (c - 1) > lam / mu:
        assert mmc(lam, mu, c - 1).wait_cdf(t) < alpha
    else:
        with pytest.raises(ValueError, match="unstable"):
            mmc(lam, mu, c - 1)
    assert c == _brute_min_servers(lambda k: mmc(lam, mu, k).wait_cdf(t) >= alpha, lam / mu)


@pytest.mark.parametrize(("lam", "mu", "target"), [(100.0, 1.0, 1.01), (0.9, 1.0, 3.0), (50.0, 4.0, 0.3)])
def test_min_servers_for_mean_response_is_exact(lam: float, mu: float, target: float) -> None:
    c = min_servers_for_mean_response(lam, mu, target)
    assert mmc(lam, mu, c).mean_response <= target
    if (c - 1) > lam / mu:
        assert mmc(lam, mu, c - 1).mean_response > target
    assert c == _brute_min_servers(lambda k: mmc(lam, mu, k).mean_response <= target, lam / mu)


def test_sizing_is_monotone() -> None:
    by_load = [min_servers_for_wait(lam, 1.0, 0.1, 0.95) for lam in np.linspace(1, 500, 40)]
    assert by_load == sorted(by_load)
    by_alpha = [min_servers_for_wait(200.0, 1.0, 0.1, alpha) for alpha in (0.5, 0.8, 0.9, 0.99, 0.9999)]
    assert by_alpha == sorted(by_alpha)
    by_t = [min_servers_for_wait(200.0, 1.0, t, 0.99) for t in (0.0, 0.01, 0.1, 1.0)]
    assert by_t == sorted(by_t, reverse=True)
    by_target = [min_servers_for_mean_response(200.0, 1.0, w) for w in (1.001, 1.01, 1.1, 2.0)]
    assert by_target == sorted(by_target, reverse=True)


def test_sizing_at_integer_load_and_large_scale() -> None:
    # a = 4 exactly: c = 4 is unstable, so the answer is at least 5
    assert min_servers_for_wait(4.0, 1.0, 0.0, 0.01) >= 5
    # square-root staffing: the answer is close to a + β√a
    c = min_servers_for_wait(10_000.0, 1.0, 0.0, 0.9)
    assert 10_000 < c < 10_000 + 5 * math.sqrt(10_000)


def test_sizing_rejects_unreachable_target() -> None:
    with pytest.raises(ValueError, match="target"):
        min_servers_for_mean_response(1.0, 2.0, 0.5)  # W >= 1/μ = 0.5 always


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: erlang_b(0, 1.0), "c"),
        (lambda: erlang_b(3, -1.0), "a"),
        (lambda: erlang_c(2.5, 1.0), "c"),
        (lambda: mm1(0.0, 1.0), "lam"),
        (lambda: mm1(-1.0, 1.0), "lam"),
        (lambda: mm1(0.5, 0.0), "mu"),
        (lambda: mm1(float("nan"), 1.0), "lam"),
        (lambda: mmc(1.0, 1.0, 0), "c"),
        (lambda: mmc(1.0, 1.0, True), "c"),
        (lambda: mmc_wait_percentile(1.0, 1.0, 2, 1.0), "alpha"),
        (lambda: mmc_wait_percentile(1.0, 1.0, 2, 0.0), "alpha"),
        (lambda: mmc_wait_tail(1.0, 1.0, 2, -1.0), "t"),
        (lambda: md1(0.5, -1.0), "d"),
        (lambda: mg1(0.5, 1.0, -0.1), "cv_s"),
        (lambda: mgc_allen_cunneen(0.5, 1.0, -1.0, 1.0, 2), "cv_a"),
        (lambda: kingman_gg1(0.5, 0.0, 1.0, 1.0), "mean_s"),
        (lambda: min_servers_for_wait(1.0, 1.0, 0.1, 1.5), "alpha"),
        (lambda: min_servers_for_wait(1.0, 1.0, -0.1, 0.5), "t"),
        (lambda: min_servers_for_mean_response(1.0, -1.0, 2.0), "mu"),
    ],
)
def test_invalid_inputs_name_the_parameter(call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=rf"^{name} "):
        call()


@pytest.mark.parametrize("call", [lambda: mm1(1.0, 1.0), lambda: mmc(10.0, 1.0, 9), lambda: md1(2.0, 0.5),
                                  lambda: mg1(1.0, 1.0, 0.5), lambda: kingman_gg1(1.1, 1.0, 1.0, 1.0)])
def test_unstable_systems_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="^unstable: "):
        call()
