"""Sliding-window traffic statistics of the balancer (the ``stats`` of ``GET /admin/state``).

The figures mean what the simulator's metrics mean (DESIGN §2), measured at the balancer:

- ``rps``: arrivals per second; ``drops``: requests refused (buffer full or timed out) per second;
- ``concurrency``: time-average of requests in the system — in flight to workers plus buffered;
- ``utilization``: time-average of busy worker slots over slots of serving workers (0..1), where a
  worker's busy slots are ``min(in_flight, concurrency)``;
- ``latency_p50|p95|p99``: over requests answered by a worker in the window (``None`` if none);
- ``queue_length``: now — buffered plus requests waiting for a slot at workers;
- ``completed`` / ``errors``: requests answered in the window, errors being 5xx other than drops.

Averages over time are exact integrals of step functions (every change is recorded), not samples.
The clock is passed in, so the arithmetic is testable without sleeping.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class StepIntegral:
    """A piecewise-constant quantity over time, integrated over a trailing window."""

    def __init__(self, horizon_s: float, value: float = 0.0, start: float = 0.0) -> None:
        self.horizon_s = horizon_s
        self.value = value
        # (time the value took effect, value); the first entry stands for everything before it.
        self._steps: deque[tuple[float, float]] = deque([(start, value)])

    def set(self, t: float, value: float) -> None:
        if value == self.value:
            return
        self.value = value
        if self._steps and self._steps[-1][0] == t:
            self._steps.pop()
        self._steps.append((t, value))
        # Keep one step older than the horizon: it holds the value at the window's start.
        while len(self._steps) > 1 and self._steps[1][0] <= t - self.horizon_s:
            self._steps.popleft()

    def add(self, t: float, delta: float) -> None:
        self.set(t, self.value + delta)

    def integral(self, t0: float, t1: float) -> float:
        """∫ value dt over [t0, t1] (t1 is "now"; before the first step the first value holds)."""
        total = 0.0
        steps = self._steps
        for i, (ts, v) in enumerate(steps):
            te = steps[i + 1][0] if i + 1 < len(steps) else t1
            lo, hi = max(ts, t0), min(te, t1)
            if hi > lo:
                total += v * (hi - lo)
        return total


class TrafficStats:
    """Counters and integrals the balancer feeds on every arrival, answer and state change."""

    def __init__(self, window_s: float, now: float) -> None:
        self.window_s = window_s
        self.started = now
        horizon = window_s * 2
        self.in_system = StepIntegral(horizon, 0.0, now)
        self.busy = StepIntegral(horizon, 0.0, now)
        self.capacity = StepIntegral(horizon, 0.0, now)
        self._arrivals: deque[float] = deque()
        self._drops: deque[float] = deque()
        self._errors: deque[float] = deque()
        self._done: deque[tuple[float, float]] = deque()  # (time, latency) of answered requests
        self.total_arrivals = 0
        self.total_completed = 0
        self.total_drops = 0
        self.total_errors = 0

    def _prune(self, now: float) -> None:
        cutoff = now - self.window_s
        for q in (self._arrivals, self._drops, self._errors):
            while q and q[0] < cutoff:
                q.popleft()
        while self._done and self._done[0][0] < cutoff:
            self._done.popleft()

    # ------------------------------------------------------------------ events
    def arrival(self, now: float) -> None:
        self.total_arrivals += 1
        self._arrivals.append(now)
        self._prune(now)

    def answered(self, now: float, latency: float, status: int) -> None:
        """A worker's answer reached the client (any status)."""
        self.total_completed += 1
        self._done.append((now, latency))
        if status >= 500:
            self.total_errors += 1
            self._errors.append(now)

    def error(self, now: float) -> None:
        """The balancer answered 5xx itself without a worker's answer (connection failure, timeout)."""
        self.total_errors += 1
        self._errors.append(now)

    def drop(self, now: float) -> None:
        """Refused: buffer full, buffered too long, or shutting down."""
        self.total_drops += 1
        self._drops.append(now)

    # ------------------------------------------------------------------ reading
    def snapshot(self, now: float, queue_length: int) -> dict[str, Any]:
        self._prune(now)
        span = min(self.window_s, max(now - self.started, 1e-9))
        t0 = now - span
        capacity = self.capacity.integral(t0, now)
        latencies = np.fromiter((lat for _, lat in self._done), dtype=np.float64, count=len(self._done))

        def pct(q: float) -> float | None:
            return float(np.percentile(latencies, q)) if len(latencies) else None

        return {
            "rps": len(self._arrivals) / span,
            "concurrency": self.in_system.integral(t0, now) / span,
            "utilization": min(1.0, self.busy.integral(t0, now) / capacity) if capacity > 0 else 0.0,
            "latency_p50": pct(50),
            "latency_p95": pct(95),
            "latency_p99": pct(99),
            "drops": len(self._drops) / span,
            "queue_length": int(queue_length),
            "completed": len(self._done),
            "errors": len(self._errors),
        }
