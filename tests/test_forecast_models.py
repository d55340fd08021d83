"""Seasonal naive and windowed regression (closed forms), time bucketing, forecast errors, and the
offline statsmodels fits that seed the online models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tidal.forecast import (
    EWMA,
    ForecastErrors,
    Holt,
    HoltWinters,
    LinearRegression,
    SeasonalNaive,
    fit_arima,
    fit_ets,
    resample,
)

# --------------------------------------------------------------------------- closed forms


def test_seasonal_naive_repeats_the_last_season():
    f = SeasonalNaive(4)
    for value in [1.0, 2.0, 3.0]:
        f.observe(value)
    assert not f.ready and f.predict(2) == 3.0  # last value until a season is in
    for value in [4.0, 10.0, 20.0, 30.0, 40.0]:
        f.observe(value)
    # The last season is 10, 20, 30, 40; step h repeats the value m steps before it.
    assert [f.predict(h) for h in range(1, 10)] == [10.0, 20.0, 30.0, 40.0] * 2 + [10.0]


@pytest.mark.parametrize("window", [2, 5, 30])
def test_linear_regression_is_exact_on_a_line(window):
    f = LinearRegression(window)
    for k in range(40):
        f.observe(7.0 - 0.25 * k)
    for h in (1, 3, 17):
        assert f.predict(h) == pytest.approx(7.0 - 0.25 * (39 + h), abs=1e-9)


def test_linear_regression_matches_polyfit_and_forgets_outside_its_window():
    rng = np.random.default_rng(3)
    y = rng.normal(50, 5, 25)
    f = LinearRegression(8)
    for value in y:
        f.observe(value)
    x = np.arange(8)
    slope, intercept = np.polyfit(x, y[-8:], 1)
    assert f.predict(4) == pytest.approx(intercept + slope * (7 + 4), abs=1e-9)


def test_regression_on_one_value_is_flat():
    f = LinearRegression(3)
    f.observe(4.0)
    assert f.predict(5) == 4.0


# --------------------------------------------------------------------------- time bucketing


def test_samples_are_averaged_per_aligned_bucket():
    f = EWMA(1.0, step_s=60)  # alpha = 1: the forecast is the last complete bucket
    assert f.update(15, 10.0) == [] and f.update(30, 20.0) == [] and f.update(45, 30.0) == []
    assert f.time is None and math.isnan(f.predict(1))
    assert f.update(60, 40.0) == [(60.0, 25.0)]  # a sample at the bucket's end completes it
    assert f.time == 60.0 and f.predict(1) == 25.0
    assert f.update(70, 1.0) == []
    assert f.update(130, 3.0) == [(120.0, 1.0)]  # a later sample completes the open bucket
    assert f.time == 120.0


def test_metric_gaps_hold_the_last_value_to_keep_the_season_phase():
    f = SeasonalNaive(3, step_s=10)
    f.update(10, 1.0)
    closed = f.update(50, 5.0)  # buckets ending at 20, 30, 40 got no sample
    assert closed == [(50.0, 5.0)]
    assert f.n_observed == 5 and f.time == 50.0
    assert [f.predict(h) for h in (1, 2, 3)] == [1.0, 1.0, 5.0]


def test_horizon_in_seconds_maps_to_whole_steps():
    f = LinearRegression(10, step_s=60)
    for k in range(1, 11):
        f.update(60.0 * k, 2.0 * k)  # one sample per bucket, a line of slope 2 per step
    assert f.time == 600.0
    assert f.forecast(0) == pytest.approx(22.0)  # the next bucket
    assert f.forecast(60) == pytest.approx(22.0)
    assert f.forecast(61) == pytest.approx(24.0)
    assert f.forecast_at(700) == pytest.approx(24.0)  # bucket (660, 720]
    assert f.steps_to(601) == 1


def test_samples_must_come_in_time_order():
    f = EWMA(0.5, step_s=10)
    f.update(10, 1.0)
    with pytest.raises(ValueError, match="increasing"):
        f.update(10, 2.0)
    with pytest.raises(ValueError, match="finite"):
        f.update(20, float("nan"))


def test_resample_uses_the_same_buckets_as_update():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(5, 40, 200))
    values = rng.uniform(0, 100, 200)
    f = EWMA(1.0, step_s=60)
    for t, v in zip(times, values, strict=True):
        f.update(t, v)
    buckets = resample(times, values, 60)
    # All but the last (still open) bucket were completed, with the same means.
    assert f.n_observed == len(buckets) - (0 if times[-1] % 60 == 0 else 1)
    assert f._last_value == pytest.approx(buckets[f.n_observed - 1])


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize("make", [lambda: SeasonalNaive(5, step_s=30), lambda: LinearRegression(6, step_s=30)],
                         ids=["seasonal_naive", "linear"])
def test_state_round_trip_with_an_open_bucket(make):
    a, b = make(), make()
    rng = np.random.default_rng(1)
    samples = [(15.0 * (k + 1), float(rng.uniform(0, 10))) for k in range(41)]
    for t, v in samples[:21]:  # ends mid-bucket
        a.update(t, v)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for t, v in samples[21:]:
        assert a.update(t, v) == b.update(t, v)
        assert a.forecast(90) == b.forecast(90)
    assert a.state_dict() == b.state_dict()


# --------------------------------------------------------------------------- forecast errors


def test_forecast_errors_match_forecasts_to_their_buckets():
    e = ForecastErrors(step_s=60, window_s=600, relative=False)
    e.expect(120, 10.0)
    e.expect(120, 99.0)  # the first (longest-lead) forecast for a bucket is kept
    e.expect(180, 20.0)
    assert e.resolve(60, 5.0) is None  # nothing was forecast for it
    assert e.resolve(120, 13.0) == pytest.approx(3.0)
    assert e.resolve(180, 15.0) == pytest.approx(-5.0)
    assert len(e) == 2
    assert e.quantile(1.0) == pytest.approx(3.0)
    assert e.quantile(0.5) == pytest.approx(-1.0)


def test_relative_errors_and_the_window():
    e = ForecastErrors(step_s=10, window_s=30, relative=True, rel_floor=1.0)
    for k, (forecast, actual) in enumerate([(10, 12), (20, 18), (0.1, 1.1), (50, 60)]):
        e.expect(10 * (k + 1), forecast)
        e.resolve(10 * (k + 1), actual)
    # The first error (t=10) left the 30 s window; 0.1 was floored to 1.
    np.testing.assert_allclose(e.errors(), [-0.1, 1.0, 0.2])
    f = ForecastErrors(step_s=10, window_s=30)
    f.load_state_dict(json.loads(json.dumps(e.state_dict())))
    np.testing.assert_allclose(f.errors(), e.errors())


def test_unresolved_forecasts_are_dropped_when_their_bucket_passes():
    e = ForecastErrors(step_s=10, window_s=100, relative=False)
    e.expect(20, 1.0)
    e.expect(40, 1.0)
    e.resolve(30, 5.0)
    assert e.state_dict()["pending"] == [[4, 1.0]]


# --------------------------------------------------------------------------- offline fits


def _seasonal(n: int, m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 200 + 0.5 * t + 40 * np.sin(2 * np.pi * t / m) + rng.normal(0, 4, n)


def test_fit_ets_seeds_an_online_model_that_continues_statsmodels():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    m = 12
    y = _seasonal(96, m)
    fit = fit_ets(y, trend=True, season_length=m)
    res = ExponentialSmoothing(y, trend="add", seasonal="add", seasonal_periods=m,
                               initialization_method="estimated").fit()
    assert fit.alpha == pytest.approx(res.params["smoothing_level"])
    f = fit.forecaster(step_s=300, history=y)
    assert isinstance(f, HoltWinters) and f.ready
    h = np.arange(1, 2 * m + 1)
    off = h % m != 0  # see test_forecast_smoothing: statsmodels issue #9538 at h = m, 2m
    np.testing.assert_allclose(f.path(len(h))[off], res.forecast(len(h))[off], rtol=0, atol=1e-8)
    block = fit.to_config(300)
    assert block["kind"] == "holt_winters" and len(block["initial_seasonal"]) == m
    assert block["season"] == m * 300 and block["step"] == 300


@pytest.mark.parametrize("shift_s", [0.0, 7 * 3600.0 + 300.0])
def test_a_seeded_policy_block_keeps_the_time_of_day(shift_s):
    """Seeded from three days of history, the model forecasts the daily shape at once, whenever
    it starts: the season's phase is anchored to the clock, not to the first sample it sees."""
    from tidal.policy.predictive import PredictiveConfig

    day, step = 86400.0, 600.0

    def rate(t):
        return 200 + 100 * np.sin(2 * np.pi * np.asarray(t) / day)

    times = np.arange(1, 3 * 1440 + 1) * 60.0
    values = rate(times) + np.random.default_rng(0).normal(0, 3, len(times))
    buckets = resample(times, values, step)
    fit = fit_ets(buckets, trend=False, season_length=int(day / step))
    block = fit.to_config(step, history=buckets, end_time=float(times[-1]))
    f = PredictiveConfig.model_validate({"forecaster": block}).forecaster.build()
    start = times[-1] + shift_s
    for k in range(1, 21):
        t = start + 60.0 * k
        f.update(t, float(rate(t)))
    assert f.n_observed >= 1
    ahead = f.time + np.arange(1, 13) * step  # the next two hours, bucket by bucket
    expected = [float(np.mean(rate(np.linspace(e - step, e, 61)))) for e in ahead]
    np.testing.assert_allclose(f.path(12), expected, atol=5.0)
    with pytest.raises(ValueError, match="end_time"):
        fit.to_config(step, history=buckets)


def test_fit_ets_without_season_gives_holt_or_ewma():
    y = _seasonal(60, 7)
    assert isinstance(fit_ets(y, trend=True).forecaster(history=y), Holt)
    assert isinstance(fit_ets(y, trend=False).forecaster(history=y), EWMA)
    with pytest.raises(ValueError, match="two seasons"):
        fit_ets(y[:20], season_length=12)


def test_fit_arima_forecasts_a_trend():
    rng = np.random.default_rng(2)
    y = 10 + 2.0 * np.arange(80) + rng.normal(0, 0.5, 80)
    fit = fit_arima(y, order=(0, 1, 1), trend="t", steps=3)
    assert len(fit.forecasts) == 3
    np.testing.assert_allclose(fit.forecasts, 10 + 2.0 * np.arange(80, 83), atol=2.0)
    assert "ma.L1" in fit.params and math.isfinite(fit.aic)
