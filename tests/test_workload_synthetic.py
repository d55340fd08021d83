"""Synthetic workloads: arrival counts match the integral of the rate, windows are respected,
generation is deterministic, and the MMPP is bursty with the right long-run mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from tidal.config.scenario import (
    BurstyWorkload,
    ConstantWorkload,
    DiurnalWorkload,
    RampWorkload,
    SpikeWorkload,
    StepWorkload,
)
from tidal.workload import Arrivals, MMPPWorkload, Workload, build_workload


# Reference rates written from the spec definitions, independently of the implementation.
def _ramp_rate(t: float, spec: RampWorkload) -> float:
    if t < spec.start:
        return spec.start_rate
    if t >= spec.end:
        return spec.end_rate
    return spec.start_rate + (spec.end_rate - spec.start_rate) * (t - spec.start) / (spec.end - spec.start)


def _spike_rate(t: float, s: SpikeWorkload) -> float:
    top, fall = s.at + s.rise, s.at + s.rise + s.duration
    if t < s.at or t >= fall + s.decay:
        return s.base
    if t < top:
        return s.base + (s.peak - s.base) * (t - s.at) / s.rise
    if t < fall:
        return s.peak
    return s.peak - (s.peak - s.base) * (t - fall) / s.decay


CASES = {
    "constant": (ConstantWorkload(kind="constant", rate=200.0), lambda t: 200.0, []),
    "step": (
        StepWorkload(kind="step", rate=100.0, to=400.0, at=123.4),
        lambda t: 100.0 if t < 123.4 else 400.0,
        [123.4],
    ),
    "ramp": (
        RampWorkload(kind="ramp", start_rate=50.0, end_rate=500.0, start=30.5, end=250.25),
        lambda t: _ramp_rate(t, CASES["ramp"][0]),
        [30.5, 250.25],
    ),
    "diurnal": (
        DiurnalWorkload(kind="diurnal", peak=400.0, trough=40.0, period=300.0, peak_at=75.0),
        lambda t: 40.0 + 360.0 * (1 + math.cos(2 * math.pi * (t - 75.0) / 300.0)) / 2,
        [],
    ),
    "spike": (
        SpikeWorkload(kind="spike", base=50.0, peak=600.0, at=60.3, rise=12.5, duration=40.0, decay=33.3),
        lambda t: _spike_rate(t, CASES["spike"][0]),
        [60.3, 72.8, 112.8, 146.1],
    ),
}
HORIZON = 400.0


def _expected(rate, a: float, b: float, breaks: list[float]) -> float:
    points = [p for p in breaks if a < p < b]
    return integrate.quad(rate, a, b, points=points or None, limit=200)[0]


def _pull(workload: Workload, edges: np.ndarray) -> list[Arrivals]:
    return [workload.arrivals(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def _within_poisson(count: int, mean: float, sigmas: float = 4.0) -> bool:
    return abs(count - mean) <= sigmas * math.sqrt(max(mean, 1.0))


@pytest.mark.parametrize("kind", list(CASES))
def test_counts_match_integral_and_windows_are_respected(kind: str) -> None:
    spec, rate, breaks = CASES[kind]
    workload = build_workload(spec, seed=11)
    assert workload.duration is None
    edges = np.concatenate((np.arange(0.0, HORIZON, 7.3), [HORIZON]))  # odd chunks straddle breakpoints
    parts = _pull(workload, edges)
    for a, b, part in zip(edges[:-1], edges[1:], parts):
        assert part.times.dtype == np.float64 and part.keys.dtype == np.int64
        assert len(part.sizes) == len(part.keys) == len(part)
        if len(part):
            assert a <= part.times[0] and part.times[-1] < b
            assert np.all(np.diff(part.times) >= 0)
        assert np.all(part.sizes == 0.0) and np.all(part.keys >= 0)
    total = sum(len(p) for p in parts)
    assert _within_poisson(total, _expected(rate, 0.0, HORIZON, breaks))
    # Each phase separately (pieces between breakpoints), so a misplaced corner would show.
    times = Arrivals.concat(parts).times
    phase_edges = [0.0, *breaks, HORIZON]
    for a, b in zip(phase_edges[:-1], phase_edges[1:]):
        count = int(np.count_nonzero((times >= a) & (times < b)))
        assert _within_poisson(count, _expected(rate, a, b, breaks)), (kind, a, b)


@pytest.mark.parametrize("kind", list(CASES))
def test_rate_matches_definition(kind: str) -> None:
    spec, rate, breaks = CASES[kind]
    workload = build_workload(spec, seed=0)
    points = np.array([0.0, 10.0, 61.0, 66.55, 75.0, 99.9, 123.4, 130.0, 225.0, 260.0, 1e5, *breaks])
    np.testing.assert_allclose(workload.rate(points), [rate(float(t)) for t in points], rtol=1e-12, atol=1e-9)


def test_diurnal_peaks_at_peak_at() -> None:
    workload = build_workload(DiurnalWorkload(kind="diurnal", peak=90, trough=10, period=100, peak_at=30), seed=0)
    np.testing.assert_allclose(workload.rate(np.array([30.0, 80.0, 130.0])), [90.0, 10.0, 90.0])


def test_step_breakpoint_is_exact_in_one_window() -> None:
    # Rate 0 before the step: no arrival may precede it, even inside a single long window.
    workload = build_workload(StepWorkload(kind="step", rate=0.0, to=1000.0, at=12.345), seed=3)
    times = workload.arrivals(0.0, 20.0).times
    assert times[0] >= 12.345
    assert _within_poisson(len(times), 1000.0 * (20.0 - 12.345))


def test_zero_rate_and_empty_window() -> None:
    silent = build_workload(ConstantWorkload(kind="constant", rate=0.0), seed=0)
    assert len(silent.arrivals(0.0, 1000.0)) == 0
    busy = build_workload(ConstantWorkload(kind="constant", rate=100.0), seed=0)
    assert len(busy.arrivals(5.0, 5.0)) == 0


@pytest.mark.parametrize("kind", [*CASES, "bursty"])
def test_same_seed_same_arrivals(kind: str) -> None:
    spec = BURSTY if kind == "bursty" else CASES[kind][0]
    edges = np.array([0.0, 13.0, 77.7, 150.0, 300.0])
    one = Arrivals.concat(_pull(build_workload(spec, seed=5), edges))
    two = Arrivals.concat(_pull(build_workload(spec, seed=5), edges))
    other = Arrivals.concat(_pull(build_workload(spec, seed=6), edges))
    np.testing.assert_array_equal(one.times, two.times)
    np.testing.assert_array_equal(one.keys, two.keys)
    assert one.times.shape != other.times.shape or not np.array_equal(one.times, other.times)


def test_bad_windows_are_rejected() -> None:
    workload = build_workload(ConstantWorkload(kind="constant", rate=1.0), seed=0)
    with pytest.raises(ValueError):
        workload.arrivals(10.0, 5.0)
    with pytest.raises(ValueError):
        workload.arrivals(0.0, math.inf)


# --------------------------------------------------------------------------- MMPP

BURSTY = BurstyWorkload(kind="bursty", rates=[10.0, 100.0], mean_durations=[20.0, 5.0])


def test_mmpp_long_run_mean_rate() -> None:
    horizon = 20_000.0
    workload = build_workload(BURSTY, seed=21)
    assert isinstance(workload, MMPPWorkload)
    total = sum(len(p) for p in _pull(workload, np.linspace(0.0, horizon, 401)))
    d0, d1 = BURSTY.mean_durations
    r0, r1 = BURSTY.rates
    mean = (r0 * d0 + r1 * d1) / (d0 + d1)
    assert workload.mean_rate == pytest.approx(mean)
    # Alternating renewal: Var(time fraction in state 0) ~ 2 d0^2 d1^2 / (T (d0+d1)^3); plus Poisson.
    sd_fraction = math.sqrt(2 * d0**2 * d1**2 / (horizon * (d0 + d1) ** 3))
    sd_rate = math.hypot(abs(r0 - r1) * sd_fraction, math.sqrt(mean / horizon))
    assert abs(total / horizon - mean) < 4.5 * sd_rate


def test_mmpp_counts_follow_its_rate_and_are_overdispersed() -> None:
    horizon = 2_000.0
    workload = build_workload(BURSTY, seed=8)
    times = Arrivals.concat(_pull(workload, np.linspace(0.0, horizon, 37))).times
    assert np.all(np.diff(times) >= 0)
    grid = np.arange(0.0, horizon, 1e-3) + 5e-4  # midpoints: the realised rate is piecewise constant
    realised = float(workload.rate(grid).sum() * 1e-3)
    assert set(np.unique(workload.rate(grid))) <= {10.0, 100.0}
    assert _within_poisson(len(times), realised)
    counts = np.histogram(times, bins=np.arange(0.0, horizon + 1, 10.0))[0]
    assert counts.var() / counts.mean() > 2.0


def test_mmpp_path_does_not_depend_on_chunking() -> None:
    coarse = build_workload(BURSTY, seed=4)
    fine = build_workload(BURSTY, seed=4)
    coarse.arrivals(0.0, 500.0)
    for a in range(0, 500, 10):
        fine.arrivals(float(a), float(a + 10))
    grid = np.linspace(0.0, 1000.0, 5001)
    np.testing.assert_array_equal(coarse.rate(grid), fine.rate(grid))
    assert coarse.rate(np.array([0.0]))[0] == 10.0  # starts in state 0
