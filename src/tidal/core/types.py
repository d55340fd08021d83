"""The policy contract's values: what a policy sees (:class:`Observation`) and returns (:class:`Decision`).

A policy reads only these. ``Observation.time`` is the only clock it may read: the simulated clock
in the simulator, the wall clock in the live controller.
"""

from __future__ import annotations

import bisect
import math

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

# Metric names shared by the simulator, live sources and policies (DESIGN §2).
METRIC_NAMES = (
    "rps",
    "concurrency",
    "utilization",
    "cpu_utilization",
    "gpu_utilization",
    "memory_utilization",
    "queue_length",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "drops",
    "ready_replicas",
)


@dataclass(frozen=True, slots=True)
class PodSample:
    """One replica as the metrics pipeline reports it at a scrape.

    ``requests`` and ``usage`` map a resource name (``cpu`` in cores, ``memory`` in MiB, ``gpu``
    in devices) to the pod's request and to its mean usage over the last scrape window, the way
    Kubernetes' metrics-server reports a pod. ``usage_time`` is when that usage was scraped and
    ``usage_window`` the window it averages (``None`` / 0 before the first scrape).
    ``in_flight`` counts requests in the replica (queued + running) at the decision.
    """

    id: int
    ready: bool
    started_at: float
    ready_at: float | None
    in_flight: int
    requests: Mapping[str, float] = field(default_factory=dict)
    usage: Mapping[str, float] = field(default_factory=dict)
    draining: bool = False
    usage_time: float | None = None
    usage_window: float = 0.0


class MetricsHistory:
    """Append-only, bounded history of scalar metric samples, owned by whoever scrapes.

    Policies never see this object, only :class:`MetricsWindow` views of it.
    """

    def __init__(self, retention_s: float = 3600.0) -> None:
        self.retention_s = float(retention_s)
        self._times: dict[str, list[float]] = {}
        self._values: dict[str, list[float]] = {}

    def record(self, time: float, values: Mapping[str, float]) -> None:
        """Append one sample per metric at ``time`` and forget samples older than the retention."""
        horizon = time - self.retention_s
        for name, value in values.items():
            times = self._times.setdefault(name, [])
            vals = self._values.setdefault(name, [])
            times.append(float(time))
            vals.append(float(value))
            # Trim in batches so appends stay amortised O(1).
            if len(times) > 64 and times[len(times) // 2] < horizon:
                cut = bisect.bisect_left(times, horizon)
                del times[:cut]
                del vals[:cut]

    def view(self, now: float, lag_s: float = 0.0) -> MetricsWindow:
        """A read-only window that shows samples taken at or before ``now - lag_s``."""
        return MetricsWindow(self, now - lag_s)

    def names(self) -> tuple[str, ...]:
        return tuple(self._times)

    def _samples(self, name: str, visible_until: float, window_s: float | None):
        times = self._times.get(name)
        if not times:
            return np.empty(0), np.empty(0)
        # Bisect the (sorted) lists and convert only the window: converting a whole hour of
        # 1 s samples on every call made a KPA run spend most of its time here.
        hi = bisect.bisect_right(times, visible_until)
        lo = 0 if window_s is None else bisect.bisect_right(times, visible_until - window_s, 0, hi)
        return np.asarray(times[lo:hi]), np.asarray(self._values[name][lo:hi])

    def _time_before(self, name: str, t: float) -> float | None:
        times = self._times.get(name)
        lo = bisect.bisect_left(times, t) if times else 0
        return times[lo - 1] if lo else None

    def _last(self, name: str, visible_until: float) -> float | None:
        times = self._times.get(name)
        hi = bisect.bisect_right(times, visible_until) if times else 0
        return self._values[name][hi - 1] if hi else None


@dataclass(frozen=True)
class MetricsWindow:
    """Read-only window over recent metric history, as of ``visible_until`` (lag applied)."""

    history: MetricsHistory
    visible_until: float

    def series(self, name: str, window_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Sample times and values of ``name`` in ``(visible_until - window_s, visible_until]``."""
        return self.history._samples(name, self.visible_until, window_s)

    def mean(self, name: str, window_s: float) -> float | None:
        """Mean of ``name`` over the last ``window_s`` seconds, or ``None`` with no samples."""
        _, values = self.series(name, window_s)
        return float(values.mean()) if len(values) else None

    def last(self, name: str) -> float | None:
        """Most recent visible value of ``name``, or ``None``."""
        return self.history._last(name, self.visible_until)

    def time_before(self, name: str, t: float) -> float | None:
        """Time of the latest visible sample of ``name`` taken before ``t``, or ``None``."""
        return self.history._time_before(name, min(t, math.nextafter(self.visible_until, math.inf)))


@dataclass(frozen=True)
class Observation:
    """What a policy sees at one decision point.

    ``replicas`` is the current spec (the count last decided, as in a Deployment's
    ``spec.replicas``; the pool follows after any actuation delay), ``ready`` the replicas serving,
    ``starting`` those pending or cold-starting. ``pods`` has one sample per live replica.
    """

    time: float
    replicas: int
    ready: int
    starting: int
    pods: Sequence[PodSample]
    metrics: MetricsWindow

    @property
    def draining(self) -> int:
        return sum(1 for pod in self.pods if pod.draining)


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer: the desired replica count, plus optional extras.

    ``resources`` is a per-replica resource recommendation (vertical scaling); ``reason`` is a
    short human-readable explanation for logs and reports.
    """

    replicas: int
    reason: str = ""
    resources: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"Decision.replicas must be >= 0, got {self.replicas}")
        if self.resources is not None:
            object.__setattr__(self, "resources", MappingProxyType(dict(self.resources)))
