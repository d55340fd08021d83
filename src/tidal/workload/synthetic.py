"""Synthetic workloads: non-homogeneous Poisson processes and a Markov-modulated Poisson process.

A window is cut into bins no longer than 1 s (only where the rate varies; flat stretches stay one
bin) whose edges include every breakpoint of the rate (step time, ramp/spike corners), so step
changes are exact. Each bin gets Poisson(exact integral of the rate over the bin) arrivals,
uniform within the bin: the piecewise-constant approximation with the exact per-bin mean.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from tidal.config.scenario import (
    BurstyWorkload,
    ConstantWorkload,
    DiurnalWorkload,
    RampWorkload,
    SpikeWorkload,
    StepWorkload,
)
from tidal.workload.base import Arrivals, check_window, unkeyed_arrivals
from tidal.workload.sampling import poisson_in_bins

#: Longest bin over which a time-varying rate is treated as constant (seconds).
MAX_BIN = 1.0


class RateFunction(Protocol):
    """A deterministic arrival rate with an exact integral."""

    def rate(self, t: np.ndarray) -> np.ndarray:
        """Rate (req/s) at times ``t``."""
        ...

    def integral(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact integral of the rate over each ``[a[i], b[i]]``."""
        ...

    def edges(self, start: float, end: float) -> np.ndarray:
        """Ascending bin edges from ``start`` to ``end`` (both included)."""
        ...


def _grid(start: float, end: float) -> np.ndarray:
    """Whole multiples of MAX_BIN strictly inside (start, end); aligned to absolute time so
    windows of any chunking share the same grid."""
    first = math.floor(start / MAX_BIN) + 1
    last = math.ceil(end / MAX_BIN) - 1
    if last < first:
        return np.empty(0, np.float64)
    return np.arange(first, last + 1, dtype=np.float64) * MAX_BIN


def _with_ends(start: float, end: float, inner: np.ndarray) -> np.ndarray:
    inner = inner[(inner > start) & (inner < end)]
    return np.unique(np.concatenate(([start], inner, [end])))


class PiecewiseLinearRate:
    """A rate linear between knots ``(xs[k], ys[k])`` and flat beyond the last knot.

    A repeated ``x`` is a jump (the rate is right-continuous). Before the first knot the rate is
    ``ys[0]``. Constant, step, ramp and spike workloads are all of this form.
    """

    def __init__(self, xs: list[float], ys: list[float]) -> None:
        if xs[0] > 0:  # anchor at t=0 so the antiderivative is measured from the simulation start
            xs, ys = [0.0, *xs], [ys[0], *ys]
        self.xs = np.asarray(xs, np.float64)
        self.ys = np.asarray(ys, np.float64)
        widths = np.diff(self.xs)
        rises = np.diff(self.ys)
        slopes = np.divide(rises, widths, out=np.zeros_like(rises), where=widths > 0)
        self.slopes = np.append(slopes, 0.0)  # flat after the last knot
        areas = 0.5 * (self.ys[:-1] + self.ys[1:]) * widths
        self.cumulative = np.concatenate(([0.0], np.cumsum(areas)))

    def _segment(self, t: np.ndarray) -> np.ndarray:
        # side="right": at a jump (repeated x) pick the last knot, i.e. the post-jump value.
        return np.clip(np.searchsorted(self.xs, t, side="right") - 1, 0, None)

    def rate(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        i = self._segment(t)
        return self.ys[i] + self.slopes[i] * np.maximum(t - self.xs[i], 0.0)

    def antiderivative(self, t: np.ndarray) -> np.ndarray:
        """Integral of the rate over ``[0, t]`` (for ``t >= 0``)."""
        t = np.asarray(t, np.float64)
        i = self._segment(t)
        dt = t - self.xs[i]
        return self.cumulative[i] + self.ys[i] * dt + 0.5 * self.slopes[i] * dt * dt

    def integral(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.antiderivative(b) - self.antiderivative(a)

    def edges(self, start: float, end: float) -> np.ndarray:
        grid = _grid(start, end)
        sloped = grid[self.slopes[self._segment(grid)] != 0.0]
        return _with_ends(start, end, np.concatenate((self.xs, sloped)))


class SinusoidRate:
    """``mid + amp * cos(2 pi (t - peak_at) / period)``."""

    def __init__(self, trough: float, peak: float, period: float, peak_at: float) -> None:
        self.mid = 0.5 * (peak + trough)
        self.amp = 0.5 * (peak - trough)
        self.omega = 2.0 * math.pi / period
        self.peak_at = peak_at

    def rate(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, np.float64)
        return self.mid + self.amp * np.cos(self.omega * (t - self.peak_at))

    def integral(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        phase_b = np.sin(self.omega * (b - self.peak_at))
        phase_a = np.sin(self.omega * (a - self.peak_at))
        return self.mid * (b - a) + (self.amp / self.omega) * (phase_b - phase_a)

    def edges(self, start: float, end: float) -> np.ndarray:
        inner = _grid(start, end) if self.amp > 0 else np.empty(0, np.float64)
        return _with_ends(start, end, inner)


class PoissonWorkload:
    """Non-homogeneous Poisson arrivals with a deterministic rate function; sizes 0, random keys."""

    duration: float | None = None

    def __init__(self, rate_function: RateFunction, seed: int) -> None:
        self.rate_function = rate_function
        self._rng = np.random.default_rng(seed)

    def arrivals(self, start: float, end: float) -> Arrivals:
        """Arrivals in ``[start, end)``."""
        check_window(start, end)
        if not math.isfinite(end):
            raise ValueError("a synthetic workload has no end; pass a finite window end")
        if end == start:
            return Arrivals.empty()
        edges = self.rate_function.edges(start, end)
        expected = self.rate_function.integral(edges[:-1], edges[1:])
        return unkeyed_arrivals(self._rng, poisson_in_bins(self._rng, edges, expected))

    def rate(self, t: np.ndarray) -> np.ndarray:
        """The exact rate at ``t``."""
        return self.rate_function.rate(np.asarray(t, np.float64))


class MMPPWorkload:
    """Markov-modulated Poisson process.

    State ``i`` emits Poisson arrivals at ``rates[i]`` and lasts Exp(mean ``mean_durations[i]``),
    then jumps to one of the other states uniformly; the process starts in state 0. The state
    path is drawn lazily from generators of its own (one for holding times, one for jumps), each
    consumed strictly in path order, so the path (and :meth:`rate`) depends only on the seed,
    never on how the simulator chunks its windows or when it asks for ``rate``.
    """

    duration: float | None = None

    def __init__(self, rates: list[float], mean_durations: list[float], seed: int) -> None:
        self.rates = np.asarray(rates, np.float64)
        self.mean_durations = np.asarray(mean_durations, np.float64)
        arrival_seq, hold_seq, jump_seq = np.random.SeedSequence(seed).spawn(3)
        self._rng = np.random.default_rng(arrival_seq)
        self._hold_rng = np.random.default_rng(hold_seq)
        self._jump_rng = np.random.default_rng(jump_seq)
        # The path: segment k starts at _starts[k] in state _states[k] (k < _count); the last
        # segment ends at _path_end, where state _next_state begins. Buffers grow by doubling.
        self._starts = np.empty(64, np.float64)
        self._states = np.empty(64, np.int64)
        self._count = 0
        self._path_end = 0.0
        self._next_state = 0

    @property
    def mean_rate(self) -> float:
        """Long-run mean rate: the embedded jump chain is uniform over states, so each state's
        share of time is proportional to its mean duration."""
        return float(self.rates @ self.mean_durations / self.mean_durations.sum())

    def _extend_path(self, until: float) -> None:
        n_states = self.rates.shape[0]
        cycle = float(self.mean_durations.mean())
        while self._path_end <= until:
            # Enough segments to pass `until` in one go (usually), bounded to cap memory per step.
            batch = min(1 << 20, max(16, int(1.25 * (until - self._path_end) / cycle) + 1))
            offsets = 1 + np.floor(self._jump_rng.random(batch) * (n_states - 1)).astype(np.int64)
            steps = np.concatenate(([0], np.cumsum(offsets[:-1])))
            states = (self._next_state + steps) % n_states
            holds = self._hold_rng.standard_exponential(batch) * self.mean_durations[states]
            ends = self._path_end + np.cumsum(holds)
            self._append(np.concatenate(([self._path_end], ends[:-1])), states)
            self._path_end = float(ends[-1])
            self._next_state = int((states[-1] + offsets[-1]) % n_states)

    def _append(self, starts: np.ndarray, states: np.ndarray) -> None:
        needed = self._count + starts.shape[0]
        if needed > self._starts.shape[0]:
            capacity = max(needed, 2 * self._starts.shape[0])
            self._starts = np.resize(self._starts, capacity)
            self._states = np.resize(self._states, capacity)
        self._starts[self._count : needed] = starts
        self._states[self._count : needed] = states
        self._count = needed

    def _path(self) -> tuple[np.ndarray, np.ndarray]:
        return self._starts[: self._count], self._states[: self._count]

    def arrivals(self, start: float, end: float) -> Arrivals:
        """Arrivals in ``[start, end)``."""
        check_window(start, end)
        if not math.isfinite(end):
            raise ValueError("a synthetic workload has no end; pass a finite window end")
        if end == start:
            return Arrivals.empty()
        self._extend_path(end)
        seg_starts, seg_states = self._path()
        first = int(np.searchsorted(seg_starts, start, side="right")) - 1
        last = int(np.searchsorted(seg_starts, end, side="left"))
        edges = np.concatenate(([start], seg_starts[first + 1 : last], [end]))
        expected = self.rates[seg_states[first:last]] * np.diff(edges)
        return unkeyed_arrivals(self._rng, poisson_in_bins(self._rng, edges, expected))

    def rate(self, t: np.ndarray) -> np.ndarray:
        """The modulating rate of the realised state path at ``t`` (the conditional intensity
        the arrivals are drawn from); ``rates[0]`` before time 0."""
        t = np.asarray(t, np.float64)
        finite = t[np.isfinite(t)]
        if finite.size:
            self._extend_path(float(finite.max()))
        seg_starts, seg_states = self._path()
        i = np.clip(np.searchsorted(seg_starts, t, side="right") - 1, 0, None)
        return self.rates[seg_states[i]]


def build_synthetic(
    spec: ConstantWorkload | StepWorkload | RampWorkload | DiurnalWorkload | SpikeWorkload | BurstyWorkload,
    seed: int,
) -> PoissonWorkload | MMPPWorkload:
    """The workload for a synthetic spec."""
    if isinstance(spec, BurstyWorkload):
        return MMPPWorkload(list(spec.rates), list(spec.mean_durations), seed)
    if isinstance(spec, DiurnalWorkload):
        return PoissonWorkload(SinusoidRate(spec.trough, spec.peak, spec.period, spec.peak_at), seed)
    return PoissonWorkload(rate_function_for(spec), seed)


def rate_function_for(
    spec: ConstantWorkload | StepWorkload | RampWorkload | SpikeWorkload,
) -> PiecewiseLinearRate:
    """The piecewise-linear rate of a constant, step, ramp or spike spec."""
    if isinstance(spec, ConstantWorkload):
        return PiecewiseLinearRate([0.0], [spec.rate])
    if isinstance(spec, StepWorkload):
        return PiecewiseLinearRate([spec.at, spec.at], [spec.rate, spec.to])
    if isinstance(spec, RampWorkload):
        return PiecewiseLinearRate([spec.start, spec.end], [spec.start_rate, spec.end_rate])
    if isinstance(spec, SpikeWorkload):
        top = spec.at + spec.rise
        fall = top + spec.duration
        xs = [spec.at, top, fall, fall + spec.decay]
        return PiecewiseLinearRate(xs, [spec.base, spec.peak, spec.peak, spec.base])
    raise TypeError(f"not a piecewise-linear workload spec: {type(spec).__name__}")
