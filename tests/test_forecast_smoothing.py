"""Online exponential smoothing agrees with statsmodels.tsa.holtwinters on the same data.

statsmodels runs with fixed smoothing parameters (``optimized=False``) and ``"known"`` initial
states equal to the simple initialisation the online models compute themselves, so both run the
same recursion from the same start and the one-step forecasts agree to round-off.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing, SimpleExpSmoothing
from statsmodels.tsa.holtwinters import Holt as SMHolt

from tidal.forecast import EWMA, Holt, HoltWinters

M = 12
TOL = 1e-9


def _series(n: int = 150, seed: int = 0) -> np.ndarray:
    """Trend + season + noise, the shape a diurnal request rate has."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 0.4 * t + 15 * np.sin(2 * np.pi * t / M) + rng.normal(0, 3, n)


def _one_step(forecaster, y: np.ndarray) -> np.ndarray:
    """The online model's forecast of each value before it sees it."""
    out = []
    for value in y:
        out.append(forecaster.predict(1))
        forecaster.observe(value)
    return np.array(out)


def _simple_init(y: np.ndarray, trend: bool, m: int | None) -> tuple[float, float | None, np.ndarray | None]:
    """Hyndman & Athanasopoulos §7.6 simple initial states."""
    if m is None:
        return float(y[0]), (float(y[1] - y[0]) if trend else None), None
    level = float(np.mean(y[:m]))
    slope = float(np.mean((y[m:2 * m] - y[:m]) / m)) if trend else None
    return level, slope, y[:m] - level


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_ewma_matches_simple_exp_smoothing(alpha):
    y = _series()
    res = SimpleExpSmoothing(y, initialization_method="known", initial_level=y[0]).fit(
        smoothing_level=alpha, optimized=False)
    f = EWMA(alpha)
    fitted = _one_step(f, y)
    np.testing.assert_allclose(fitted[1:], res.fittedvalues[1:], rtol=0, atol=TOL)
    np.testing.assert_allclose(f.path(5), res.forecast(5), rtol=0, atol=TOL)


@pytest.mark.parametrize("alpha, beta, phi", [(0.4, 0.2, 1.0), (0.8, 0.05, 1.0), (0.3, 0.3, 0.9)])
def test_holt_matches_statsmodels(alpha, beta, phi):
    y = _series()
    level, slope, _ = _simple_init(y, trend=True, m=None)
    res = SMHolt(y, damped_trend=phi < 1, initialization_method="known", initial_level=level,
                 initial_trend=slope).fit(smoothing_level=alpha, smoothing_trend=beta,
                                          **({"damping_trend": phi} if phi < 1 else {}), optimized=False)
    f = Holt(alpha, beta, phi=phi)  # initialises itself from the first two values
    fitted = _one_step(f, y)
    np.testing.assert_allclose(fitted[2:], res.fittedvalues[2:], rtol=0, atol=TOL)
    np.testing.assert_allclose(f.path(24), res.forecast(24), rtol=0, atol=1e-8)
    assert f.level == pytest.approx(res.level[-1], abs=TOL)
    assert f.trend == pytest.approx(res.trend[-1], abs=TOL)


def _hw_case(trend: bool, phi: float):
    y = _series()
    level, slope, season = _simple_init(y, trend=trend, m=M)
    kwargs = {"initial_trend": slope} if trend else {}
    res = ExponentialSmoothing(y, trend="add" if trend else None, damped_trend=phi < 1, seasonal="add",
                               seasonal_periods=M, initialization_method="known", initial_level=level,
                               initial_seasonal=season, **kwargs).fit(
        smoothing_level=0.3, smoothing_seasonal=0.2, optimized=False,
        **({"smoothing_trend": 0.1} if trend else {}), **({"damping_trend": phi} if phi < 1 else {}))
    f = HoltWinters(0.3, 0.2, M, beta=0.1 if trend else None, phi=phi)
    return y, res, f


@pytest.mark.parametrize("trend, phi", [(True, 1.0), (True, 0.95), (False, 1.0)], ids=["trend", "damped", "no-trend"])
def test_holt_winters_one_step_matches_statsmodels(trend, phi):
    y, res, f = _hw_case(trend, phi)
    fitted = _one_step(f, y)
    start = 2 * M if trend else M  # the online model initialises once it has seen these
    np.testing.assert_allclose(fitted[start:], res.fittedvalues[start:], rtol=0, atol=TOL)
    assert f.level == pytest.approx(res.level[-1], abs=TOL)


@pytest.mark.parametrize("trend, phi", [(True, 1.0), (True, 0.95), (False, 1.0)], ids=["trend", "damped", "no-trend"])
def test_holt_winters_multi_step_forecasts(trend, phi):
    """statsmodels agrees off the season boundaries; at h = m, 2m, ... the textbook formula
    (which tidal follows) uses the latest season component, statsmodels <= 0.15 an older one
    (statsmodels issue #9538), so those are checked against the formula on statsmodels' states."""
    y, res, f = _hw_case(trend, phi)
    for value in y:
        f.observe(value)
    h = np.arange(1, 3 * M + 1)
    ours = f.path(len(h))
    off_boundary = h % M != 0
    np.testing.assert_allclose(ours[off_boundary], res.forecast(len(h))[off_boundary], rtol=0, atol=1e-8)
    slope = res.trend[-1] if trend else 0.0
    damped = np.cumsum(phi ** h) if trend else np.zeros(len(h))
    season = res.season[-M:]  # s_{T-m+1} .. s_T
    textbook = res.level[-1] + damped * slope + season[(h - 1) % M]
    np.testing.assert_allclose(ours, textbook, rtol=0, atol=1e-8)


def test_known_initial_states_need_no_warm_up():
    y = _series(60)
    res = ExponentialSmoothing(y, trend="add", seasonal="add", seasonal_periods=M, initialization_method="known",
                               initial_level=90.0, initial_trend=0.5, initial_seasonal=np.linspace(-5, 5, M)).fit(
        smoothing_level=0.5, smoothing_trend=0.1, smoothing_seasonal=0.3, optimized=False)
    f = HoltWinters(0.5, 0.3, M, beta=0.1, initial_level=90.0, initial_trend=0.5,
                    initial_seasonal=np.linspace(-5, 5, M))
    assert f.ready
    np.testing.assert_allclose(_one_step(f, y), res.fittedvalues, rtol=0, atol=TOL)


def test_forecasts_are_naive_until_initialised():
    f = HoltWinters(0.3, 0.2, 4, beta=0.1)
    assert np.isnan(f.predict(1))
    for value in [5.0, 7.0, 6.0, 8.0, 9.0, 11.0, 10.0]:
        f.observe(value)
        assert not f.ready
        assert f.predict(3) == value  # last value until two seasons are in
    f.observe(12.0)
    assert f.ready


def test_linear_series_is_extrapolated_exactly_by_holt():
    # l_0 is the level one step before y_0 (statsmodels' convention).
    f = Holt(0.5, 0.5, initial_level=1.0, initial_trend=2.0)
    for k in range(20):
        f.observe(3.0 + 2.0 * k)
    assert f.predict(1) == pytest.approx(3.0 + 2.0 * 20, abs=1e-9)
    assert f.predict(10) == pytest.approx(3.0 + 2.0 * 29, abs=1e-9)


def test_pure_season_is_repeated_exactly_by_holt_winters():
    pattern = np.array([10.0, 30.0, 50.0, 20.0, 5.0, 15.0])
    f = HoltWinters(0.4, 0.6, len(pattern))
    for _ in range(3):
        for value in pattern:
            f.observe(value)
    np.testing.assert_allclose(f.path(12), np.tile(pattern, 2), atol=1e-9)


@pytest.mark.parametrize("make", [
    lambda: EWMA(0.3, step_s=60),
    lambda: Holt(0.5, 0.2, step_s=60, phi=0.9),
    lambda: HoltWinters(0.3, 0.2, M, beta=0.1, step_s=60),
], ids=["ewma", "holt", "holt_winters"])
def test_state_round_trip_resumes_identically(make):
    y = _series(80)
    a, b = make(), make()
    for value in y[:17]:  # mid-initialisation for Holt–Winters
        a.observe(value)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for value in y[17:]:
        a.observe(value)
        b.observe(value)
        assert b.predict(3) == a.predict(3)
    assert b.state_dict() == a.state_dict()


@pytest.mark.parametrize("bad", [
    lambda: EWMA(0.0), lambda: EWMA(1.5), lambda: Holt(0.5, -0.1), lambda: Holt(0.5, 0.1, phi=0.0),
    lambda: Holt(0.5, 0.1, initial_level=1.0), lambda: HoltWinters(0.5, 0.1, 1),
    lambda: HoltWinters(0.5, 0.1, 4, initial_level=1.0), lambda: HoltWinters(0.5, 0.1, 3, initial_level=0.0,
                                                                            initial_seasonal=[1.0, 2.0]),
    lambda: EWMA(0.5, step_s=0),
])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        bad()


def test_state_of_another_kind_or_shape_is_refused():
    with pytest.raises(ValueError, match="holt"):
        EWMA(0.3).load_state_dict(Holt(0.3, 0.1).state_dict())
    with pytest.raises(ValueError, match="structure"):
        HoltWinters(0.3, 0.1, 4).load_state_dict(HoltWinters(0.3, 0.1, 5).state_dict())
